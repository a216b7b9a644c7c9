package embedded

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// retention keeps the broker's records under a byte budget, dropping the
// oldest as a real broker's retention.bytes would. It counts the record
// bytes of every produce request (a control function that observes and lets
// the broker handle the request), and each time another eighth of the
// budget has been produced it wakes a trimmer goroutine. The trimmer notes
// each partition's end offset with the bytes produced to it so far (a
// checkpoint) and, while the bytes kept exceed the budget, deletes records
// up to the oldest checkpoints of the partitions holding the most
// (DeleteRecords, through its own client), down to three quarters of the
// budget. Memory so follows the budget at the granularity of a checkpoint,
// whatever is produced.
type retention struct {
	budget  atomic.Int64 // bytes
	since   atomic.Int64 // bytes produced since the last trimmer wake-up
	trimmed atomic.Int64 // records deleted
	mu      sync.Mutex
	parts   map[tp]*partBytes   // as produce requests name them
	names   map[[16]byte]string // topic ID -> name (trimmer goroutine)
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	client  *kgo.Client
}

// tp names a partition. Produce requests name topics by name or, from
// protocol version 13 on, by topic ID; the trimmer resolves IDs to names.
type tp struct {
	topic     string
	id        [16]byte
	partition int32
}

// partBytes is one partition's accounting.
type partBytes struct {
	produced int64        // record bytes produced to it
	start    int64        // produced bytes before its first kept checkpoint
	low      int64        // log start offset after the last trim
	cps      []checkpoint // oldest first
}

// checkpoint: records before offset had produced bytes in all.
type checkpoint struct {
	offset int64
	bytes  int64
}

func newRetention(addr string, budget int64) (*retention, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(2))
	if err != nil {
		return nil, err
	}
	r := &retention{parts: map[tp]*partBytes{}, names: map[[16]byte]string{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), client: cl}
	r.budget.Store(budget)
	go r.run()
	return r, nil
}

// observe counts a produce request's record bytes (the broker's control
// function: it never handles the request).
func (r *retention) observe(req kmsg.Request) (kmsg.Response, error, bool) {
	pr, ok := req.(*kmsg.ProduceRequest)
	if !ok {
		return nil, nil, false
	}
	var n int64
	r.mu.Lock()
	for _, t := range pr.Topics {
		for _, p := range t.Partitions {
			k := tp{topic: t.Topic, partition: p.Partition}
			if k.topic == "" {
				k.id = t.TopicID
			}
			pb := r.parts[k]
			if pb == nil {
				pb = &partBytes{}
				r.parts[k] = pb
			}
			pb.produced += int64(len(p.Records))
			n += int64(len(p.Records))
		}
	}
	r.mu.Unlock()
	if r.since.Add(n) >= r.budget.Load()/8 {
		r.since.Store(0)
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return nil, nil, false
}

func (r *retention) run() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r.trim(ctx)
		cancel()
	}
}

// trim takes a checkpoint of every partition and deletes the oldest
// records while more than the budget is kept.
func (r *retention) trim(ctx context.Context) {
	r.mu.Lock()
	keys := make([]tp, 0, len(r.parts))
	produced := make(map[tp]int64, len(r.parts))
	for k, pb := range r.parts {
		keys = append(keys, k)
		produced[k] = pb.produced
	}
	r.mu.Unlock()
	if err := r.resolve(ctx, keys); err != nil {
		return
	}
	named := make([]tp, len(keys))
	for i, k := range keys {
		named[i] = tp{topic: r.named(k).topic, partition: k.partition}
	}
	ends, err := r.endOffsets(ctx, named)
	if err != nil {
		return
	}
	r.mu.Lock()
	var kept int64
	for i, k := range keys {
		if end, ok := ends[named[i]]; ok {
			pb := r.parts[k]
			pb.cps = append(pb.cps, checkpoint{offset: end, bytes: produced[k]})
		}
	}
	for _, pb := range r.parts {
		kept += pb.produced - pb.start
	}
	budget := r.budget.Load()
	del := map[tp]int64{}
	for kept > budget*3/4 {
		// The partition keeping the most bytes gives up its oldest
		// checkpoint's worth (never its newest checkpoint).
		var big *partBytes
		var bigK tp
		for k, pb := range r.parts {
			if len(pb.cps) > 1 && (big == nil || pb.produced-pb.start > big.produced-big.start) {
				big, bigK = pb, k
			}
		}
		if big == nil {
			break
		}
		cp := big.cps[0]
		big.cps = big.cps[1:]
		kept -= cp.bytes - big.start
		big.start = cp.bytes
		del[bigK] = cp.offset
	}
	r.mu.Unlock()
	if len(del) > 0 {
		r.deleteRecords(ctx, del)
	}
}

// named returns k with its topic name (resolve found it).
func (r *retention) named(k tp) tp {
	if k.topic == "" {
		k.topic = r.names[k.id]
	}
	return k
}

// resolve learns the topic names of keys that came by topic ID (one
// metadata request when an ID is new).
func (r *retention) resolve(ctx context.Context, keys []tp) error {
	missing := false
	for _, k := range keys {
		if k.topic == "" && r.names[k.id] == "" {
			missing = true
		}
	}
	if missing {
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, r.client)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			if t.Topic != nil {
				r.names[t.TopicID] = *t.Topic
			}
		}
	}
	return nil
}

// endOffsets lists the end offsets of the partitions (named keys).
func (r *retention) endOffsets(ctx context.Context, keys []tp) (map[tp]int64, error) {
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].topic < keys[j].topic || keys[i].topic == keys[j].topic && keys[i].partition < keys[j].partition
	})
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	var cur *kmsg.ListOffsetsRequestTopic
	for _, k := range keys {
		if cur == nil || cur.Topic != k.topic {
			req.Topics = append(req.Topics, kmsg.NewListOffsetsRequestTopic())
			cur = &req.Topics[len(req.Topics)-1]
			cur.Topic = k.topic
		}
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Partition, p.Timestamp = k.partition, -1 // latest
		cur.Partitions = append(cur.Partitions, p)
	}
	resp, err := req.RequestWith(ctx, r.client)
	if err != nil {
		return nil, err
	}
	out := map[tp]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				out[tp{topic: t.Topic, partition: p.Partition}] = p.Offset
			}
		}
	}
	return out, nil
}

// deleteRecords deletes the records before each partition's offset and
// counts them (by the partitions' new log start offsets).
func (r *retention) deleteRecords(ctx context.Context, del map[tp]int64) {
	byTopic := map[string][]kmsg.DeleteRecordsRequestTopicPartition{}
	back := map[tp]tp{} // named key -> parts key
	for k, off := range del {
		name := r.named(k).topic
		p := kmsg.NewDeleteRecordsRequestTopicPartition()
		p.Partition, p.Offset = k.partition, off
		byTopic[name] = append(byTopic[name], p)
		back[tp{topic: name, partition: k.partition}] = k
	}
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 5000
	for topic, parts := range byTopic {
		t := kmsg.NewDeleteRecordsRequestTopic()
		t.Topic, t.Partitions = topic, parts
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, r.client)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			pb := r.parts[back[tp{topic: t.Topic, partition: p.Partition}]]
			if p.ErrorCode != 0 || pb == nil || p.LowWatermark <= pb.low {
				continue
			}
			r.trimmed.Add(p.LowWatermark - pb.low)
			pb.low = p.LowWatermark
		}
	}
}

// stats returns the budget, the bytes kept and the records trimmed so far.
func (r *retention) stats() (budget, kept, trimmed int64) {
	r.mu.Lock()
	for _, pb := range r.parts {
		kept += pb.produced - pb.start
	}
	r.mu.Unlock()
	return r.budget.Load(), kept, r.trimmed.Load()
}

func (r *retention) close() {
	close(r.stop)
	<-r.done
	r.client.Close()
}
