package core

import (
	"fmt"
	"sort"
	"strings"
)

// startOrder returns the names in start order: topological over Requires and
// Optional (optional only when present), ties broken by preload first, then
// Priority, then name. A dependency cycle is an error naming the cycle.
// Requirements that are not in the set do not order anything; the host
// declines such modules when it starts them.
func startOrder(infos map[string]ModuleInfo, preload map[string]bool) ([]string, error) {
	deps := func(info ModuleInfo) []string {
		var out []string
		for _, d := range append(append([]string(nil), info.Requires...), info.Optional...) {
			if _, ok := infos[d]; ok {
				out = append(out, d)
			}
		}
		return out
	}
	if cyc := findCycle(infos, deps); cyc != nil {
		return nil, fmt.Errorf("dependency cycle: %s", strings.Join(cyc, " -> "))
	}
	indeg := make(map[string]int, len(infos))
	users := make(map[string][]string)
	for name, info := range infos {
		for _, d := range deps(info) {
			indeg[name]++
			users[d] = append(users[d], name)
		}
	}
	less := func(a, b string) bool {
		if preload[a] != preload[b] {
			return preload[a]
		}
		if pa, pb := infos[a].Priority, infos[b].Priority; pa != pb {
			return pa < pb
		}
		return a < b
	}
	var ready, order []string
	for name := range infos {
		if indeg[name] == 0 {
			ready = append(ready, name)
		}
	}
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return less(ready[i], ready[j]) })
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, u := range users[n] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	return order, nil
}

// findCycle returns one dependency cycle as a path a -> b -> ... -> a, or nil.
func findCycle(infos map[string]ModuleInfo, deps func(ModuleInfo) []string) []string {
	const (
		white = iota
		grey
		black
	)
	color := make(map[string]int, len(infos))
	var stack []string
	var cycle []string
	var visit func(string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		ds := deps(infos[n])
		sort.Strings(ds)
		for _, d := range ds {
			switch color[d] {
			case grey:
				for i, s := range stack {
					if s == d {
						cycle = append(append([]string(nil), stack[i:]...), d)
						return true
					}
				}
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	names := make([]string, 0, len(infos))
	for n := range infos {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if color[n] == white && visit(n) {
			return cycle
		}
	}
	return nil
}
