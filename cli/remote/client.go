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

	mu     sync.Mutex
	conn   net.Conn
	dec    *json.Decoder
	enc    *json.Encoder
	broken error // set once the connection is unusable
}

// Dial connects to the control socket at path.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("unable to connect to switchboard on %s (is it running? see -s): %w", path, err)
	}
	return &Client{path: path, conn: conn, dec: json.NewDecoder(bufio.NewReader(conn)), enc: json.NewEncoder(conn)}, nil
}

// Path returns the socket path the client is connected to.
func (c *Client) Path() string { return c.path }

// Run runs one command line on the daemon, copies its output to w and returns
// its error: a *CommandError for a failed or unknown command (errors.Is
// cli.ErrUnknownCommand for the latter), or an error wrapping
// ErrDisconnected when the daemon could not answer.
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
		return &CommandError{Msg: resp.Error, Unknown: resp.Unknown}
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = disconnected(errors.New("client closed"))
	}
	return c.conn.Close()
}

func (c *Client) roundTrip(ctx context.Context, req Request) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return Response{}, c.broken
	}
	// Cancelling ctx interrupts a blocked read or write; the connection is
	// then out of step with the server and is given up.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	var resp Response
	err := c.enc.Encode(req)
	if err == nil {
		err = c.dec.Decode(&resp)
	}
	if !stop() && err == nil {
		// The answer arrived, but ctx's deadline was (or is being) set on the
		// connection: keep the answer, give the connection up.
		c.broken = disconnected(ctx.Err())
		c.conn.Close()
		return resp, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = disconnected(err)
		}
		c.broken = err
		c.conn.Close()
		return Response{}, err
	}
	return resp, nil
}
