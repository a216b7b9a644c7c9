// Package cheap gives back the C heap's free memory: cgo libraries
// (Hyperscan's compiler, librdkafka) allocate and free through glibc's
// malloc, which keeps freed pages for reuse, so a process that compiles
// large databases now and then would hold their peak for good.
package cheap

// #include <malloc.h>
import "C"

// Trim returns the free memory of every glibc malloc arena to the OS
// (malloc_trim). It costs a walk of the free lists: call it after a large
// C allocation burst has been freed, not on a hot path.
func Trim() { C.malloc_trim(0) }
