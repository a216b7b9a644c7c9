package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Client is a connection to a daemon's control socket. It implements the
// console's Runner, so the remote console uses the same completion and
// error handling as the local one. Requests on one Client are serialised.
type Client struct {
	path string
	conn net.Conn
	enc  *json.Encoder
	resp chan Response // answers read by the reader goroutine
	done chan struct{} // closed when the connection is gone
	err  error         // why; valid once done is closed

	mu        sync.Mutex // one request at a time
	closeOnce sync.Once
}

// Dial connects to the control socket at path.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("unable to connect to switchboard on %s (is it running? see -s): %w", path, err)
	}
	c := &Client{path: path, conn: conn, enc: json.NewEncoder(conn),
		resp: make(chan Response), done: make(chan struct{})}
	go c.read()
	return c, nil
}

// read delivers answers; it notices at once when the daemon goes away, even
// between requests, so a remote console can say so without waiting for the
// next command.
func (c *Client) read() {
	dec := json.NewDecoder(bufio.NewReader(c.conn))
	for {
		var r Response
		if err := dec.Decode(&r); err != nil {
			c.fail(disconnected(err))
			return
		}
		select {
		case c.resp <- r:
		case <-c.done:
			return
		}
	}
}

func (c *Client) fail(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		close(c.done)
		c.conn.Close()
	})
}

// Path returns the socket path the client is connected to.
func (c *Client) Path() string { return c.path }

// Done is closed when the connection is gone (the daemon stopped, or Close).
func (c *Client) Done() <-chan struct{} { return c.done }

// Run runs one command line on the daemon, copies its output to w and returns
// its error: a *CommandError for a failed or unknown command or wrong
// arguments (errors.Is cli.ErrUnknownCommand for an unknown command,
// cli.ErrUsage for wrong arguments), or an error wrapping ErrDisconnected
// when the daemon could not answer.
func (c *Client) Run(ctx context.Context, w io.Writer, line string) error {
	resp, err := c.roundTrip(ctx, Request{Op: OpRun, Line: line})
	if err != nil {
		return err
	}
	if resp.Output != "" {
		if _, err := io.WriteString(w, resp.Output); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	if resp.Error != "" {
		return &CommandError{Msg: resp.Error, Unknown: resp.Unknown, Usage: resp.Usage}
	}
	return nil
}

// Complete returns the daemon's completion candidates for line; nil if the
// daemon does not answer within a few seconds.
func (c *Client) Complete(line string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.roundTrip(ctx, Request{Op: OpComplete, Line: line})
	if err != nil {
		return nil
	}
	return resp.Candidates
}

// Close closes the connection.
func (c *Client) Close() error {
	c.fail(disconnected(errors.New("client closed")))
	return nil
}

func (c *Client) roundTrip(ctx context.Context, req Request) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return Response{}, c.err
	default:
	}
	// The write cannot block for long (the server reads every request), but
	// bound it anyway.
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.enc.Encode(req); err != nil {
		c.fail(disconnected(err))
		return Response{}, c.err
	}
	select {
	case r := <-c.resp:
		return r, nil
	case <-c.done:
		return Response{}, c.err
	case <-ctx.Done():
		// The answer would arrive out of step with the next request: give
		// the connection up.
		c.fail(ctx.Err())
		return Response{}, ctx.Err()
	}
}
