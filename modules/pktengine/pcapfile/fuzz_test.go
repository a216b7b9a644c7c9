package pcapfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader reads arbitrary bytes as a capture: it must never panic, must
// end (an error or io.EOF), and must return no packet beyond MaxPacket.
// Seeds: the crafted captures of the engine's tests.
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob("../testdata/crafted/*")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil && len(data) < 4096 {
			f.Add(data)
		}
	}
	if len(files) == 0 {
		f.Fatal("no seed captures in ../testdata/crafted")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i := 0; i <= len(data); i++ { // every packet takes at least one byte
			pkt, ci, err := r.ZeroCopyReadPacketData()
			if err != nil {
				return
			}
			if len(pkt) > MaxPacket || ci.CaptureLength != len(pkt) {
				t.Fatalf("packet of %d bytes (capture length %d)", len(pkt), ci.CaptureLength)
			}
		}
		t.Fatalf("more packets than bytes in %d bytes of input", len(data))
	})
}
