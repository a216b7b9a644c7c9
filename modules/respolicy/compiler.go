package respolicy

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// compiler compiles base tables into Hyperscan databases in one background
// goroutine, one at a time, newest table per key only: a sync that
// completes while an older table of the same group is still queued replaces
// it, and a compile whose table was replaced meanwhile is thrown away. The
// snapshot swap never waits for it (a 300k-entry compile takes tens of
// seconds); the compiled database is attached by publishing one more
// snapshot.
type compiler struct {
	store  *Store
	logger *slog.Logger

	mu    sync.Mutex
	jobs  map[string]*table
	order []string
	state map[string]string
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

// StartCompiler starts the background Hyperscan compiler (when the config
// enables Hyperscan) and queues every current base.
func (s *Store) StartCompiler(logger *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cfg.Hyperscan || s.comp != nil {
		return
	}
	c := &compiler{store: s, logger: logger, jobs: map[string]*table{}, state: map[string]string{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.comp = c
	go c.run()
	for name, g := range s.groups {
		if g.hs == nil {
			s.queueCompile("group:"+name, g.base)
		}
	}
	if s.malHS == nil {
		s.queueCompile("malicious", s.malBase)
	}
}

// Close stops the compiler (a compile in progress finishes in the background
// and is discarded) and retires every literal database; each is freed once
// no reader holds it. Pattern databases go with the last snapshot that
// holds them.
func (s *Store) Close() {
	s.mu.Lock()
	s.stopCompilerLocked()
	s.mu.Unlock()
}

// stopCompilerLocked stops the compiler and retires every database (store
// lock held).
func (s *Store) stopCompilerLocked() {
	c := s.comp
	s.comp = nil
	for _, g := range s.groups {
		if g.hs != nil {
			g.hs.retire()
			g.hs, g.view = nil, nil
		}
	}
	if s.malHS != nil {
		s.malHS.retire()
		s.malHS = nil
	}
	s.publishLocked()
	if c != nil {
		close(c.stop)
	}
}

// queueCompile queues t for key (store lock held).
func (s *Store) queueCompile(key string, t *table) {
	c := s.comp
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case t.n == 0:
		c.state[key] = "empty"
		delete(c.jobs, key)
		return
	case s.cfg.HyperscanMaxEntries > 0 && t.n > s.cfg.HyperscanMaxEntries:
		c.state[key] = fmt.Sprintf("skipped: %d entries > hyperscan_max_entries %d", t.n, s.cfg.HyperscanMaxEntries)
		delete(c.jobs, key)
		return
	}
	if _, queued := c.jobs[key]; !queued {
		c.order = append(c.order, key)
	}
	c.jobs[key] = t
	c.state[key] = fmt.Sprintf("queued (%d entries)", t.n)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// hsStateLocked describes the Hyperscan state of a key (store lock held).
func (s *Store) hsStateLocked(key string, base *table, db *hsDB) string {
	if db != nil {
		return fmt.Sprintf("ready (%d entries, %.1f MB, compiled in %s)", len(db.ids),
			float64(db.size)/1e6, db.compile.Round(time.Millisecond))
	}
	if s.comp == nil {
		if !s.cfg.Hyperscan {
			return "off"
		}
		return "stopped"
	}
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	if st, ok := s.comp.state[key]; ok {
		return st
	}
	if base.n == 0 {
		return "empty"
	}
	return "none"
}

func (c *compiler) next() (string, *table) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 {
		key := c.order[0]
		c.order = c.order[1:]
		if t, ok := c.jobs[key]; ok {
			delete(c.jobs, key)
			c.state[key] = fmt.Sprintf("compiling (%d entries)", t.n)
			return key, t
		}
	}
	return "", nil
}

func (c *compiler) setState(key, st string) {
	c.mu.Lock()
	c.state[key] = st
	c.mu.Unlock()
}

func (c *compiler) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		for {
			key, t := c.next()
			if t == nil {
				break
			}
			db, err := compileTable(t)
			select {
			case <-c.stop:
				if db != nil {
					db.retire()
				}
				return
			default:
			}
			if err != nil {
				c.setState(key, "failed: "+err.Error())
				c.logger.Error("hyperscan compile failed", "table", key, "entries", t.n, "err", err)
				continue
			}
			c.logger.Debug("hyperscan database compiled", "table", key, "entries", t.n, "took", db.compile, "bytes", db.size)
			if !c.store.attach(key, t, db) {
				db.retire()
				c.setState(key, "superseded")
			}
		}
	}
}

// attach publishes a compiled database if its table is still the base of
// key; false means it was superseded.
func (s *Store) attach(key string, t *table, db *hsDB) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.comp == nil {
		return false
	}
	if key == "malicious" {
		if s.malBase != t {
			return false
		}
		s.malHS = db
	} else {
		g := s.groups[strings.TrimPrefix(key, "group:")]
		if g == nil || g.base != t {
			return false
		}
		g.hs, g.view = db, nil
	}
	s.comp.mu.Lock()
	delete(s.comp.state, key)
	s.comp.mu.Unlock()
	s.publishLocked()
	return true
}
