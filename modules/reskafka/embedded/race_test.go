//go:build race

package embedded

// raceOn: the race detector's shadow memory is most of the process's
// resident memory, so memory bounds are checked only without it.
const raceOn = true
