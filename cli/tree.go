package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Tree is a set of commands, resolved by longest matching word path. It is safe
// for concurrent use: modules register and unregister while consoles run.
type Tree struct {
	mu   sync.RWMutex
	cmds map[string]*Command // by normalised path
}

// NewTree returns an empty command tree.
func NewTree() *Tree { return &Tree{cmds: make(map[string]*Command)} }

// Register adds commands owned by owner. A path that is already registered is
// an error naming its owner; nothing is added in that case.
func (t *Tree) Register(owner string, cmds ...*Command) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cmds {
		p := normalise(c.Path)
		if p == "" || c.Run == nil {
			return fmt.Errorf("command %q of %s: empty path or no Run", c.Path, owner)
		}
		if old, ok := t.cmds[p]; ok {
			return fmt.Errorf("command %q of %s is already registered by %s", p, owner, old.owner)
		}
	}
	for _, c := range cmds {
		c.owner = owner
		c.Path = normalise(c.Path)
		t.cmds[c.Path] = c
	}
	return nil
}

// Unregister removes every command owned by owner.
func (t *Tree) Unregister(owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, c := range t.cmds {
		if c.owner == owner {
			delete(t.cmds, p)
		}
	}
}

// Commands returns every command whose path starts with the given words, sorted.
func (t *Tree) Commands(prefix ...string) []*Command {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []*Command
	for _, c := range t.cmds {
		if hasWordPrefix(strings.Fields(c.Path), prefix) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Lookup resolves the longest command path that prefixes words and returns the
// command with the remaining words as its arguments.
func (t *Tree) Lookup(words []string) (*Command, []string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for n := len(words); n > 0; n-- {
		if c, ok := t.cmds[strings.Join(words[:n], " ")]; ok {
			return c, words[n:], true
		}
	}
	return nil, nil, false
}

// Run executes one command line, writing its output to w. An unknown command
// returns an error wrapping ErrUnknownCommand. When the command returns a
// UsageError, Run returns a *UsageError with the command's path and synopsis
// set, whose text is "<path>: <problem>" and "Usage: <synopsis>" on two lines
// (one already completed by a nested Run is returned as it is).
func (t *Tree) Run(ctx context.Context, w io.Writer, line string) error {
	words, err := Split(line)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return nil
	}
	c, args, ok := t.Lookup(words)
	if !ok {
		return fmt.Errorf("%w: '%s'. Try 'core show help'", ErrUnknownCommand, strings.Join(words, " "))
	}
	err = c.Run(ctx, w, args)
	var ue *UsageError
	if errors.As(err, &ue) {
		if ue.Path != "" {
			return ue
		}
		return &UsageError{Msg: ue.Msg, Path: c.Path, Synopsis: c.Synopsis()}
	}
	return err
}

// UsageText returns the command's usage, or its path when it has none.
func (c *Command) UsageText() string {
	if c.Usage != "" {
		return c.Usage
	}
	return c.Path
}

// Synopsis returns the first line of the command's usage, or its path when
// it has none.
func (c *Command) Synopsis() string {
	first, _, _ := strings.Cut(c.UsageText(), "\n")
	if first = strings.TrimSpace(first); first == "" {
		return c.Path
	}
	return first
}

// Complete returns the candidate completions for the last (partial) word of
// line: command words first, then the command's own argument completer.
func (t *Tree) Complete(line string) []string {
	words := strings.Fields(line)
	prefix := ""
	if len(words) > 0 && !strings.HasSuffix(line, " ") {
		prefix = words[len(words)-1]
		words = words[:len(words)-1]
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range t.Commands() {
		cw := strings.Fields(c.Path)
		if len(cw) > len(words) && hasWordPrefix(cw, words) && strings.HasPrefix(cw[len(words)], prefix) {
			if w := cw[len(words)]; !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	if c, args, ok := t.Lookup(words); ok && c.Complete != nil && len(out) == 0 {
		for _, cand := range c.Complete(args, prefix) {
			if strings.HasPrefix(cand, prefix) && !seen[cand] {
				seen[cand] = true
				out = append(out, cand)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Split breaks a command line into words; double quotes group words.
func Split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
			in = true
		case (r == ' ' || r == '\t') && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func hasWordPrefix(words, prefix []string) bool {
	if len(prefix) > len(words) {
		return false
	}
	for i := range prefix {
		if words[i] != prefix[i] {
			return false
		}
	}
	return true
}

func normalise(path string) string { return strings.Join(strings.Fields(path), " ") }
