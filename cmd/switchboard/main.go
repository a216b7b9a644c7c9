// Command switchboard is the switchboard daemon with the built-in modules,
// its console and its remote control, with Asterisk's flags (package daemon
// documents them all):
//
//	switchboard [-f] [-c] [-C DIR] [-D DIR] [-s PATH] [-d] [-v]   run the daemon
//	switchboard -r  [-s PATH]                                     remote console
//	switchboard -rx "command" [-s PATH]                           one command
//	switchboard --check-config [-C DIR]                           validate config
//	switchboard --version
package main

import (
	"os"

	"github.com/switchboard-dp/switchboard/daemon"
	_ "github.com/switchboard-dp/switchboard/modules/all" // built-in modules register into core.Default
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// empty, the daemon reports the module version or VCS revision.
var version = ""

func main() {
	os.Exit(daemon.Main(daemon.Options{Name: "switchboard", Version: version, FallbackConfigDir: "samples"}))
}
