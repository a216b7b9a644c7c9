//go:build !race

package embedded

// raceOn: see race_test.go.
const raceOn = false
