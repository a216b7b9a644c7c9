package core

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
)

// coreCommands are the commands the host itself owns.
func (h *Host) coreCommands() []*cli.Command {
	moduleNames := func(running bool) func([]string, string) []string {
		return func(args []string, prefix string) []string {
			if len(args) > 1 || (len(args) == 1 && args[0] != "-f") {
				return nil
			}
			var out []string
			if !running {
				out = h.reg.Names()
			} else {
				for _, m := range h.Modules() {
					if m.State == StateRunning {
						out = append(out, m.Name)
					}
				}
			}
			return out
		}
	}
	return []*cli.Command{
		{Path: "core show help", Summary: "Display help for a command, or list commands",
			Usage: "core show help [command words]",
			Run:   h.cmdHelp,
			Complete: func(args []string, prefix string) []string {
				return h.tree.Complete(strings.Join(append(args, prefix), " "))
			}},
		{Path: "core show version", Summary: "Display version info", Usage: "core show version",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				fmt.Fprintf(w, "switchboard %s\n", h.opts.Version)
				return nil
			}},
		{Path: "core show uptime", Summary: "Show time running", Usage: "core show uptime",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				fmt.Fprintf(w, "System uptime: %s\n", h.Uptime().Truncate(time.Second))
				return nil
			}},
		{Path: "core reload", Summary: "Reload every running module's configuration", Usage: "core reload",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				if err := h.Reload(""); err != nil {
					return err
				}
				fmt.Fprintln(w, "Reloaded every running module that supports reload.")
				return nil
			}},
		{Path: "core stop", Summary: "Stop switchboard (now, or gracefully)", Usage: "core stop now|gracefully",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.ExactArgs(args, "now|gracefully"); err != nil {
					return err
				}
				switch args[0] {
				case "now":
					h.RequestStop(StopNow)
				case "gracefully":
					h.RequestStop(StopGracefully)
				default:
					return cli.Usagef("expected now|gracefully, got %q", args[0])
				}
				fmt.Fprintf(w, "Stopping switchboard (%s).\n", args[0])
				return nil
			},
			Complete: func(args []string, _ string) []string {
				if len(args) == 0 {
					return []string{"gracefully", "now"}
				}
				return nil
			}},
		{Path: "module show", Summary: "List modules and info about them", Usage: "module show [like <text>]",
			Run: h.cmdModuleShow,
			Complete: func(args []string, _ string) []string {
				if len(args) == 0 {
					return []string{"like"}
				}
				return nil
			}},
		{Path: "module load", Summary: "Load a module", Usage: "module load <name>",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.ExactArgs(args, "<name>"); err != nil {
					return err
				}
				if err := h.Load(args[0]); err != nil {
					return fmt.Errorf("unable to load module %s: %w", args[0], err)
				}
				fmt.Fprintf(w, "Loaded %s\n", moduleName(args[0]))
				return nil
			},
			Complete: moduleNames(false)},
		{Path: "module unload", Summary: "Unload a module", Usage: "module unload [-f] <name>",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				force := len(args) > 0 && args[0] == "-f"
				if force {
					args = args[1:]
					if len(args) == 0 {
						return cli.Usagef("expected <name> after \"-f\"")
					}
				}
				if err := cli.ExactArgs(args, "<name>"); err != nil {
					return err
				}
				if err := h.Unload(args[0], force); err != nil {
					return fmt.Errorf("unable to unload module %s: %w", args[0], err)
				}
				fmt.Fprintf(w, "Unloaded %s\n", moduleName(args[0]))
				return nil
			},
			Complete: moduleNames(true)},
		{Path: "module reload", Summary: "Reload one module, or all", Usage: "module reload [<name>]",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.MaxArgs(args, 1); err != nil {
					return err
				}
				name := ""
				if len(args) == 1 {
					name = args[0]
				}
				if err := h.Reload(name); err != nil {
					return err
				}
				if name == "" {
					name = "every running module"
				}
				fmt.Fprintf(w, "Reloaded %s\n", name)
				return nil
			},
			Complete: moduleNames(true)},
	}
}

func (h *Host) cmdHelp(_ context.Context, w io.Writer, args []string) error {
	if c, rest, ok := h.tree.Lookup(args); ok && len(rest) == 0 && len(args) > 0 {
		fmt.Fprintf(w, "Usage: %s\n       %s\n", c.UsageText(), c.Summary)
		return nil
	}
	cmds := h.tree.Commands(args...)
	if len(cmds) == 0 {
		return fmt.Errorf("no command matches '%s'", strings.Join(args, " "))
	}
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "%s\t-- %s\n", c.Path, c.Summary)
	}
	return tw.Flush()
}

func (h *Host) cmdModuleShow(_ context.Context, w io.Writer, args []string) error {
	like := ""
	if len(args) > 0 {
		if err := cli.Keyword(args, 0, "like", "<text>"); err != nil {
			return err
		}
		if err := cli.MaxArgs(args, 2); err != nil {
			return err
		}
		like = args[1]
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Module\tDescription\tUse Count\tStatus\tSupport Level")
	n := 0
	for _, m := range h.Modules() {
		if like != "" && !strings.Contains(m.Name, like) {
			continue
		}
		status := m.State.String()
		if m.LastError != "" {
			status += " (" + m.LastError + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.Name, m.Description, m.UseCount, status, m.Support)
		if m.State == StateRunning {
			n++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d modules loaded\n", n)
	return nil
}
