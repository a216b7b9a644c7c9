package respolicy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxLine bounds one line of a policy file; a longer line is rejected as
// malformed JSON (and skipped).
const maxLine = 1 << 20

// LoadResult reports one file load.
type LoadResult struct {
	File     string
	Source   string
	At       time.Time
	Lines    int            // non-empty, non-comment lines read
	Applied  int            // messages accepted
	Rejected int            // messages skipped
	Reasons  map[string]int // rejected, by reason
	Errors   []string       // the first few rejections, "line N: reason: detail"
	Took     time.Duration
}

// ReadMessages reads JSON-lines policy messages (the feed's format, one JSON
// object per line; empty lines and lines starting with '#' are skipped). It
// calls fn for each line with its 1-based number, the parsed message and
// the parse error (a *RejectError) if any.
func ReadMessages(r io.Reader, fn func(line int, msg Message, err error)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, long, err := readLine(br)
		if len(line) > 0 || err == nil {
			n++
			t := bytes.TrimSpace(line)
			if len(t) > 0 && t[0] != '#' {
				if long {
					fn(n, Message{}, reject(ReasonMalformedJSON, "line longer than %d bytes", maxLine))
				} else {
					msg, perr := ParseMessage(t)
					fn(n, msg, perr)
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read line %d: %w", n+1, err)
		}
	}
}

// readLine returns one line without its newline; a line longer than
// maxLine is consumed and reported as long (its bytes are not kept).
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			buf = append(buf, chunk...)
			if len(buf) > maxLine+1 {
				long, buf = true, buf[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(buf); n > 0 && buf[n-1] == '\n' {
			buf = buf[:n-1]
		}
		if long {
			buf = append(buf, 'x') // non-empty: counted as a line
		}
		return buf, long, err
	}
}

// LoadFile applies a JSON-lines file of policy messages ("policy load",
// seed_file) as one batch: readers see the policy before the file or after
// all of it. Rejected lines are counted, logged (rate-limited) and skipped.
func (m *Module) LoadFile(path, source string) (LoadResult, error) {
	start := time.Now()
	res := LoadResult{File: path, Source: source, At: start, Reasons: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("policy load: %w", err)
	}
	defer f.Close()
	s := m.getStore()
	var msgs []Message
	var lines []int
	note := func(line int, err error) {
		res.Rejected++
		reason := RejectReason(err)
		res.Reasons[reason]++
		if len(res.Errors) < 10 {
			res.Errors = append(res.Errors, fmt.Sprintf("line %d: %v", line, err))
		}
		m.logReject(source, fmt.Errorf("%s line %d: %w", path, line, err))
	}
	err = ReadMessages(f, func(line int, msg Message, perr error) {
		res.Lines++
		if perr != nil {
			s.CountReject(source, RejectReason(perr))
			note(line, perr)
			return
		}
		msgs = append(msgs, msg)
		lines = append(lines, line)
	})
	if err != nil {
		return res, fmt.Errorf("policy load %s: %w", path, err)
	}
	for i, aerr := range s.ApplyBatch(source, msgs) {
		if aerr != nil {
			note(lines[i], aerr)
		} else {
			res.Applied++
		}
	}
	res.Took = time.Since(start)
	m.mu.Lock()
	m.loads = append(m.loads, res)
	if len(m.loads) > 5 {
		m.loads = m.loads[len(m.loads)-5:]
	}
	m.mu.Unlock()
	return res, nil
}
