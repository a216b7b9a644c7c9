package reskafka

import (
	"sort"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// MissingTopicGrace is how long after Subscribe a subscribed topic that does
// not exist yet counts as about to be created (by its producer, another
// module or the provisioning system) rather than as a problem: within it,
// librdkafka's "Subscribed topic not available: <topic>: Broker: Unknown
// topic or partition" is logged once at INFO, is not a connection error and
// shows as "Waiting for topics: <topic>" in "kafka show consumer". A topic
// still missing when the grace period ends is logged as a warning and
// recorded as the connection's and the subscription's last error, as any
// other client error. SubscribeOptions.MissingTopicGrace changes it for one
// subscription.
const MissingTopicGrace = 30 * time.Second

// topicCheckTimeoutMs bounds one metadata request checking whether a waited
// for topic exists.
const topicCheckTimeoutMs = 2000

// topicWait is one subscribed topic that did not exist when librdkafka
// looked it up.
type topicWait struct {
	since time.Time   // when librdkafka first reported it missing
	err   kafka.Error // what it reported, logged if the grace period ends
}

// missingTopic returns the subscribed topic that e reports as not existing
// ("Subscribed topic not available: <topic>: Broker: Unknown topic or
// partition"), and false for any other error.
func (s *Subscription) missingTopic(e kafka.Error) (string, bool) {
	if e.Code() != kafka.ErrUnknownTopicOrPart && e.Code() != kafka.ErrUnknownTopic {
		return "", false
	}
	msg := e.Error()
	for _, t := range s.topics {
		if strings.HasPrefix(msg, t+": ") || strings.Contains(msg, ": "+t+": ") {
			return t, true
		}
	}
	return "", false
}

// waitForTopic handles an error event of the consumer that reports a
// subscribed topic missing within the grace period: the topic is marked as
// waited for (logged once at INFO) and it reports true. Any other error, and
// a missing topic after the grace period, report false: the caller handles
// them as client errors.
func (s *Subscription) waitForTopic(e kafka.Error) bool {
	topic, ok := s.missingTopic(e)
	if !ok {
		return false
	}
	now := time.Now()
	if now.Sub(s.started) >= s.grace {
		return false
	}
	s.smu.Lock()
	w, known := s.waiting[topic]
	if known {
		w.err = e
	} else {
		s.waiting[topic] = &topicWait{since: now, err: e}
		s.waitingN.Store(int32(len(s.waiting)))
	}
	s.smu.Unlock()
	if !known {
		s.m.logger.Info("kafka subscription waiting for topic to be created", "connection", s.c.name,
			"subscription", s.name, "topic", topic, "grace", s.grace)
	}
	return true
}

// topicsAssigned ends the wait for the topics of assigned partitions (poll
// goroutine, in the rebalance callback). When topics are still waited for,
// it has their existence checked: another member of the group may own all
// their partitions.
func (s *Subscription) topicsAssigned(tps []kafka.TopicPartition) {
	if s.waitingN.Load() == 0 {
		return
	}
	now := time.Now()
	var done []string
	var waited []time.Duration
	s.smu.Lock()
	for _, tp := range tps {
		if w, ok := s.waiting[*tp.Topic]; ok {
			done = append(done, *tp.Topic)
			waited = append(waited, now.Sub(w.since))
			delete(s.waiting, *tp.Topic)
		}
	}
	s.waitingN.Store(int32(len(s.waiting)))
	left := len(s.waiting)
	s.smu.Unlock()
	for i, t := range done {
		s.m.logger.Info("kafka subscribed topic exists now", "connection", s.c.name, "subscription", s.name,
			"topic", t, "waited", waited[i].Round(time.Millisecond))
	}
	if left > 0 {
		s.checkTopics()
	}
}

// checkWaitingTopics runs on the poll goroutine: once the grace period has
// ended with topics still waited for, it has them checked.
func (s *Subscription) checkWaitingTopics() {
	if s.waitingN.Load() == 0 || time.Since(s.started) < s.grace {
		return
	}
	s.checkTopics()
}

// checkTopics starts a check of the waited for topics, unless one runs.
func (s *Subscription) checkTopics() {
	if s.checking.CompareAndSwap(false, true) {
		go s.verifyTopics()
	}
}

// verifyTopics asks the cluster whether the waited for topics exist. One
// that exists is no longer waited for. After the grace period, one that does
// not (or that could not be looked up) is handled as the client error
// librdkafka reported: a warning, the connection's and the subscription's
// last error.
func (s *Subscription) verifyTopics() {
	defer s.checking.Store(false)
	s.smu.Lock()
	topics := make([]string, 0, len(s.waiting))
	for t := range s.waiting {
		topics = append(topics, t)
	}
	s.smu.Unlock()
	sort.Strings(topics)
	exists := make(map[string]bool, len(topics))
	s.kcMu.RLock() // Close waits for the requests
	kc := s.kc.Load()
	if kc == nil {
		s.kcMu.RUnlock()
		return
	}
	for _, t := range topics {
		md, err := kc.GetMetadata(&t, false, topicCheckTimeoutMs)
		if err != nil {
			continue
		}
		if tm, ok := md.Topics[t]; ok && tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) > 0 {
			exists[t] = true
		}
	}
	s.kcMu.RUnlock()
	now := time.Now()
	expired := now.Sub(s.started) >= s.grace
	var found []string
	var missing []kafka.Error
	s.smu.Lock()
	for _, t := range topics {
		w, ok := s.waiting[t]
		switch {
		case !ok:
		case exists[t]:
			found = append(found, t)
			delete(s.waiting, t)
		case expired:
			missing = append(missing, w.err)
			delete(s.waiting, t)
		}
	}
	s.waitingN.Store(int32(len(s.waiting)))
	s.smu.Unlock()
	for _, t := range found {
		s.m.logger.Info("kafka subscribed topic exists now", "connection", s.c.name, "subscription", s.name, "topic", t)
	}
	for _, e := range missing {
		s.clientError(e)
	}
}

// waitingTopicsLocked returns the topics waited for, sorted, and since when
// the oldest is; s.smu held.
func (s *Subscription) waitingTopicsLocked() ([]string, time.Time) {
	var out []string
	var since time.Time
	for t, w := range s.waiting {
		out = append(out, t)
		if since.IsZero() || w.since.Before(since) {
			since = w.since
		}
	}
	sort.Strings(out)
	return out, since
}
