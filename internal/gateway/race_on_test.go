//go:build race

package gateway

// raceEnabled: the race detector drops sync.Pool entries at random, so allocation counts
// are noisy.
const raceEnabled = true
