package cdrkafka

import (
	"time"

	"github.com/switchboard-dp/switchboard/conf"
)

// ConfigFile is the module's configuration file.
const ConfigFile = "cdr_kafka.conf"

// File is cdr_kafka.conf.
type File struct {
	General Config `section:"general"`
}

// Validate checks that the journal is asked for only in spool mode (the
// journal replays through the spool).
func (f *File) Validate(cf *conf.File) error {
	var errs conf.Errors
	if f.General.Journal && f.General.mode() != modeSpool {
		errs.At(cf, "general", "journal", "journal = yes needs on_queue_full = spool (the journal replays through the spool)")
	}
	return errs.Err()
}

// Config is the [general] section of cdr_kafka.conf.
type Config struct {
	// Enabled = no makes the module decline.
	Enabled bool `conf:"enabled" default:"yes"`
	// Connection is the res_kafka connection (a section of kafka.conf).
	// Empty: the connection named "cdr" if kafka.conf has one, else the only
	// connection if there is exactly one.
	Connection string `conf:"connection"`
	// Topic receives the CDRs.
	Topic string `conf:"topic" default:"dp_cdr"`
	// BatchMax is the number of records after which a worker's batch is
	// handed to the producer.
	BatchMax int `conf:"batch_max" default:"256" min:"1" max:"100000"`
	// FlushMs is the age of a batch's oldest record at which the batch is
	// handed over even if not full.
	FlushMs int `conf:"flush_ms" default:"100" min:"1" max:"60000"`
	// Key is the Kafka key: ip_binary (4 bytes network order for IPv4, 16
	// for IPv6) or ip_text.
	Key string `conf:"key" default:"ip_binary" enum:"ip_binary|ip_text"`
	// OnQueueFull is what happens when the producer queue stays full:
	// drop (retry once, then drop and count), block (retry for up to
	// block_ms, then drop and count) or spool (write to the spool, replay
	// when there is room).
	OnQueueFull string `conf:"on_queue_full" default:"drop" enum:"drop|block|spool"`
	// Journal (spool mode only) writes every batch ahead to a journal before
	// producing it, so a kill -9 loses nothing handed over (see the package
	// doc for the window).
	Journal bool `conf:"journal" default:"no"`
	// BlockMs bounds the wait of one hand-over in block mode.
	BlockMs int `conf:"block_ms" default:"1000" min:"1" max:"60000"`
	// SpoolDir holds the spool; relative to the data dir. Default cdr_kafka.
	SpoolDir string `conf:"spool_dir" default:"cdr_kafka"`
	// SpoolMaxMB caps the spool's size; records beyond it are dropped and
	// counted (reason spool_error). 0: no cap.
	SpoolMaxMB int `conf:"spool_max_mb" default:"1024" min:"0" max:"1048576"`
	// SpoolFsyncMs and SpoolFsyncRecords bound what an OS crash can lose of
	// the spool (a process crash loses nothing written).
	SpoolFsyncMs      int `conf:"spool_fsync_ms" default:"100" min:"1" max:"60000"`
	SpoolFsyncRecords int `conf:"spool_fsync_records" default:"1000" min:"1" max:"10000000"`
	// ReplayInflight is how many replayed records may be in the producer at
	// once.
	ReplayInflight int `conf:"replay_inflight" default:"10000" min:"1" max:"10000000"`
	// IDHeader is the name of the Kafka header that carries each CDR's id
	// (the "id" field of the JSON) so a consumer can de-duplicate without
	// parsing the value; empty: no header.
	IDHeader string `conf:"id_header" default:"cdr_id"`
	// ShutdownFlushMs bounds the producer flush at unload.
	ShutdownFlushMs int `conf:"shutdown_flush_ms" default:"5000" min:"0" max:"600000"`
	// TopicPartitions, when > 0, makes the module ensure the topic exists
	// with that many partitions (and TopicReplication) at start.
	TopicPartitions  int `conf:"topic_partitions" default:"0" min:"0" max:"100000"`
	TopicReplication int `conf:"topic_replication" default:"1" min:"1" max:"100"`
}

// Queue-full modes.
const (
	modeDrop = iota
	modeBlock
	modeSpool
)

func (c *Config) mode() int {
	switch c.OnQueueFull {
	case "block":
		return modeBlock
	case "spool":
		return modeSpool
	}
	return modeDrop
}

func (c *Config) flushAfter() time.Duration { return time.Duration(c.FlushMs) * time.Millisecond }
