package core

import (
	"fmt"
	"sort"
	"sync"
)

// Registry is a set of module types. Registries are values: a test or another
// program can make its own; built-in modules register into Default.
type Registry struct {
	mu    sync.RWMutex
	infos map[string]ModuleInfo
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{infos: make(map[string]ModuleInfo)} }

// Default is the registry built-in modules add themselves to from init.
var Default = NewRegistry()

// Register adds module types. A duplicate or incomplete registration is an
// error and nothing is added.
func (r *Registry) Register(infos ...ModuleInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, info := range infos {
		if info.Name == "" || info.New == nil {
			return fmt.Errorf("register module %q: name and New are required", info.Name)
		}
		if _, dup := r.infos[info.Name]; dup {
			return fmt.Errorf("register module %q: already registered", info.Name)
		}
	}
	for _, info := range infos {
		r.infos[info.Name] = info
	}
	return nil
}

// Register adds a module type to Default. It panics on a duplicate name, like
// database/sql.Register: that is a programming error found at start-up.
func Register(info ModuleInfo) {
	if err := Default.Register(info); err != nil {
		panic(err)
	}
}

// Lookup returns the registration of the named module type.
func (r *Registry) Lookup(name string) (ModuleInfo, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	info, ok := r.infos[name]
	return info, ok
}

// Names returns the registered module names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.infos))
	for n := range r.infos {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
