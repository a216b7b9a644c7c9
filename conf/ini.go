package conf

import (
	"fmt"

	"github.com/go-ini/ini"
)

// INI returns the concrete sections of f as a go-ini file, for code that
// prefers go-ini's accessors. Each call builds a new *ini.File; repeated keys
// are kept as go-ini shadows (ValueWithShadows), names keep their case, and
// files, lines and templates are not carried over.
func (f *File) INI() (*ini.File, error) {
	out := ini.Empty(ini.LoadOptions{AllowShadows: true, AllowDuplicateShadowValues: true})
	if f == nil {
		return out, nil
	}
	for _, s := range f.Sections {
		sec, err := out.NewSection(s.Name)
		if err != nil {
			return nil, fmt.Errorf("conf: %s:%d: section [%s]: %w", s.File, s.Line, s.Name, err)
		}
		for _, k := range s.Keys {
			if _, err := sec.NewKey(k.Name, k.Value); err != nil {
				return nil, fmt.Errorf("conf: %s:%d: [%s] %s: %w", k.File, k.Line, s.Name, k.Name, err)
			}
		}
	}
	return out, nil
}
