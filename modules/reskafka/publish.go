package reskafka

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/switchboard-dp/switchboard/cli"
)

// publishWindow bounds the messages "kafka publish file" keeps in flight, so
// a large file never fills the producer's queue (which would count drops).
const publishWindow = 5000

func (m *Module) publishCommand() *cli.Command {
	return &cli.Command{
		Path:    "kafka publish file",
		Summary: "Produce every line of a file as one message and wait for their delivery",
		Usage: "kafka publish file connection <name> topic <topic> file <path> [key <key>]\n" +
			"       Empty lines are skipped. Waits for every delivery report (at most the\n" +
			"       connection's message_timeout_ms) and prints how many were delivered.",
		Run:      m.cliPublishFile,
		Complete: m.completeKeywords("connection", "topic", "file", "key"),
	}
}

func (m *Module) cliPublishFile(ctx context.Context, w io.Writer, args []string) error {
	for i, kv := range [][2]string{{"connection", "<name>"}, {"topic", "<topic>"}, {"file", "<path>"}} {
		if err := cli.Keyword(args, 2*i, kv[0], kv[1]); err != nil {
			return err
		}
	}
	if len(args) > 6 {
		if err := cli.Keyword(args, 6, "key", "<key>"); err != nil {
			return err
		}
	}
	if err := cli.MaxArgs(args, 8); err != nil {
		return err
	}
	name, topic, path := args[1], args[3], args[5]
	var key []byte
	if len(args) == 8 {
		key = []byte(args[7])
	}
	c, err := m.conn(name)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kafka publish file: %w", err)
	}
	defer f.Close()
	p, err := m.Producer(name)
	if err != nil {
		return fmt.Errorf("connection %s: %s", name, c.mask(err.Error()))
	}
	defer p.Release()

	var (
		delivered, failed atomic.Int64
		wg                sync.WaitGroup
		firstErr          atomic.Value
		window            = make(chan struct{}, publishWindow)
	)
	onDelivery := func(d Delivery) {
		if d.Err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, d.Err.Error())
		} else {
			delivered.Add(1)
		}
		<-window
		wg.Done()
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	sent, line := 0, 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("interrupted after %d messages (%s line %d); they stay queued", sent, path, line)
		}
		wg.Add(1)
		for {
			err := p.Produce(topic, key, sc.Bytes(), nil, onDelivery)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) || ctx.Err() != nil {
				<-window
				wg.Done()
				return fmt.Errorf("%s line %d not queued after %d messages: %s", path, line, sent, c.mask(err.Error()))
			}
		}
		sent++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s after line %d: %w", path, line, err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("interrupted while waiting: %d of %d delivered so far", delivered.Load(), sent)
	}
	fmt.Fprintf(w, "Published %d messages from %s to %s: %d delivered, %d failed\n", sent, path, topic, delivered.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d messages failed, first error: %s", n, c.mask(firstErr.Load().(string)))
	}
	return nil
}
