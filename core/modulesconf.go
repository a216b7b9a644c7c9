package core

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
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

// modulesConf reads modules.conf: [modules] with autoload = yes|no,
// repeated load =>, noload =>, preload =>, require => lines and
// stop_timeout (each module's default stop budget, such as 10s). A missing file
// means autoload everything. Unknown modules, unknown keys and a module both
// required and noloaded are errors naming file:line.
func readModulesConf(path string, reg *Registry) (*selection, error) {
	sel := &selection{autoload: true, load: map[string]bool{}, noload: map[string]bool{},
		preload: map[string]bool{}, require: map[string]bool{}}
	f, err := conf.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return sel, nil
	}
	if err != nil {
		return nil, err
	}
	var errs conf.Errors
	bad := func(k *conf.Key, format string, a ...any) {
		errs = append(errs, &conf.Error{File: k.File, Line: k.Line, Section: "modules", Key: k.Name, Msg: fmt.Sprintf(format, a...)})
	}
	for _, s := range f.Sections {
		if s.Name != "modules" {
			errs = append(errs, &conf.Error{File: s.File, Line: s.Line, Section: s.Name, Msg: "unknown section (only [modules] is allowed)"})
			continue
		}
		for _, k := range s.Keys {
			switch strings.ToLower(k.Name) {
			case "autoload":
				switch strings.ToLower(k.Value) {
				case "yes", "true", "on", "1":
					sel.autoload = true
				case "no", "false", "off", "0":
					sel.autoload = false
				default:
					bad(k, "%q is not yes or no", k.Value)
				}
			case "load", "noload", "preload", "require":
				name := strings.TrimSuffix(k.Value, ".so")
				if _, ok := reg.Lookup(name); !ok {
					bad(k, "unknown module %q", name)
					continue
				}
				map[string]map[string]bool{"load": sel.load, "noload": sel.noload,
					"preload": sel.preload, "require": sel.require}[strings.ToLower(k.Name)][name] = true
			case "stop_timeout":
				d, err := time.ParseDuration(k.Value)
				if err != nil || d <= 0 || d > time.Hour {
					bad(k, "%q is not a duration from 1ms to 1h (such as 10s)", k.Value)
					continue
				}
				sel.stopTimeout = d
			default:
				bad(k, "unknown key (want autoload, load, noload, preload, require or stop_timeout)")
			}
		}
		for _, k := range s.Keys {
			if strings.EqualFold(k.Name, "require") && sel.noload[strings.TrimSuffix(k.Value, ".so")] {
				bad(k, "module %q is both required and noloaded", k.Value)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return sel, nil
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
