//go:build race

package main

// raceEnabled makes the end-to-end test build the daemon with -race too.
const raceEnabled = true
