package reskafka

import "fmt"

// The librdkafka versions res_kafka's C declarations (sb_rdkafka.h) are
// written for, in rd_kafka_version()'s encoding 0xMMmmrrpp (major, minor,
// revision, pre-release; 0xff: final): from 2.0.0, pre-releases included,
// up to but not including 3.0.0. librdkafka only adds to its ABI within a
// major version (its shared library has been librdkafka.so.1 since 1.0;
// Debian's 2.0.2 is one), and every function declared predates 2.0.0, so
// the whole 2.x series matches what rdkabi_test.go proves for the linked
// version. 1.x is left out because the declarations were only ever checked
// against 2.x, and a new major version may change the ABI: it is refused
// until the declarations are checked against it and the range widened.
const (
	rdkafkaMinVersion = 0x02000000 // 2.0.0, inclusive
	rdkafkaEndVersion = 0x03000000 // 3.0.0, exclusive
)

// rdkafkaVersionString renders an rd_kafka_version() value as
// major.minor.revision followed by the value itself.
func rdkafkaVersionString(v int) string {
	return fmt.Sprintf("%d.%d.%d (0x%08x)", v>>24&0xff, v>>16&0xff, v>>8&0xff, v)
}

// checkRdkafkaVersion returns an error naming both versions when linked,
// an rd_kafka_version() value, is outside the range sb_rdkafka.h is
// written for.
func checkRdkafkaVersion(linked int) error {
	if linked >= rdkafkaMinVersion && linked < rdkafkaEndVersion {
		return nil
	}
	return fmt.Errorf("the linked librdkafka is %s, but res_kafka's declarations of its C interface (sb_rdkafka.h) are written for librdkafka >= %s and < %s",
		rdkafkaVersionString(linked), rdkafkaVersionString(rdkafkaMinVersion), rdkafkaVersionString(rdkafkaEndVersion))
}
