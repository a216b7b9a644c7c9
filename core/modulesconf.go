package core

import (
	"errors"
	"io/fs"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
)

// selection is what modules.conf says to load, with Asterisk semantics.
type selection struct {
	autoload bool
	load     map[string]bool
	noload   map[string]bool
	preload  map[string]bool
	require  map[string]bool
	// stopTimeout is stop_timeout: each module's default stop budget.
	stopTimeout time.Duration
}

// modulesFile is modules.conf: one [modules] section.
type modulesFile struct {
	Modules struct {
		Autoload    bool          `conf:"autoload" default:"yes"`
		Load        []string      `conf:"load"`
		Noload      []string      `conf:"noload"`
		Preload     []string      `conf:"preload"`
		Require     []string      `conf:"require"`
		StopTimeout time.Duration `conf:"stop_timeout" min:"1ms" max:"1h"`
	} `section:"modules"`

	reg *Registry // the module types names must belong to
	sel *selection
}

// UnmarshalConf decodes [modules] and checks every named module (a
// trailing ".so" is accepted, as in Asterisk) and that none is both required
// and noloaded, each problem at its own line. The names are checked even
// when a key of the section is wrong, so that every problem is reported at
// once.
func (m *modulesFile) UnmarshalConf(f *conf.File) error {
	var errs conf.Errors
	for _, s := range f.Sections {
		if s.Name != "modules" {
			errs.Add(s, nil, "unknown section (want [modules])")
		}
	}
	sec := f.Section("modules")
	if err := conf.Decode(sec, &m.Modules); err != nil {
		var ce conf.Errors
		if !errors.As(err, &ce) {
			return err
		}
		errs = append(errs, ce...)
	}
	sel := &selection{autoload: m.Modules.Autoload, load: map[string]bool{}, noload: map[string]bool{},
		preload: map[string]bool{}, require: map[string]bool{}, stopTimeout: m.Modules.StopTimeout}
	for _, kind := range []struct {
		key string
		set map[string]bool
	}{{"load", sel.load}, {"noload", sel.noload}, {"preload", sel.preload}, {"require", sel.require}} {
		for _, k := range sec.Values(kind.key) {
			name := moduleName(k.Value)
			if _, ok := m.reg.Lookup(name); !ok {
				errs.Add(sec, k, "unknown module %q", name)
				continue
			}
			kind.set[name] = true
		}
	}
	for _, k := range sec.Values("require") {
		if sel.noload[moduleName(k.Value)] {
			errs.Add(sec, k, "module %q is both required and noloaded", k.Value)
		}
	}
	m.sel = sel
	return errs.Err()
}

// readModulesConf reads modules.conf: [modules] with autoload = yes|no,
// repeated load =>, noload =>, preload =>, require => lines and
// stop_timeout (each module's default stop budget, such as 10s). A missing
// file means autoload everything. Unknown modules, unknown keys and a module
// both required and noloaded are errors naming file:line.
func readModulesConf(path string, reg *Registry) (*selection, error) {
	f, err := conf.Load(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	m := &modulesFile{reg: reg}
	if f == nil {
		return &selection{autoload: true}, nil
	}
	if err := conf.DecodeFile(f, m); err != nil {
		return nil, err
	}
	return m.sel, nil
}

// wanted returns the names of the modules the selection loads.
func (s *selection) wanted(reg *Registry) []string {
	var out []string
	for _, n := range reg.Names() {
		if s.noload[n] {
			continue
		}
		if s.autoload || s.load[n] || s.preload[n] || s.require[n] {
			out = append(out, n)
		}
	}
	return out
}
