package gateway

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// accessLog writes one JSON line per request. A request only appends its line to a buffer
// under a short lock; a flusher writes the buffer out every accessLogFlushEvery (sooner when
// it passes accessLogFlushAt), outside that lock, so a slow or stuck destination (a full
// pipe, a disk under writeback) never holds up a response. While the destination is stuck
// the buffer grows to accessLogMaxBuffer and then lines are dropped, counted, and reported
// by a line of their own once writing resumes.
type accessLog struct {
	dst     io.Writer
	dropped prometheus.Counter // may be nil

	mu    sync.Mutex
	buf   []byte // lines not yet handed to the flusher
	drops int    // lines dropped since the last flush

	wake chan struct{} // the buffer passed accessLogFlushAt
	stop chan struct{}
	done chan struct{}
}

const (
	accessLogFlushEvery = 200 * time.Millisecond
	accessLogFlushAt    = 64 << 10
	accessLogMaxBuffer  = 8 << 20
)

func newAccessLog(dst io.Writer, dropped prometheus.Counter) *accessLog {
	a := &accessLog{
		dst: dst, dropped: dropped, buf: make([]byte, 0, accessLogFlushAt),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go a.flushLoop()
	return a
}

func (a *accessLog) flushLoop() {
	defer close(a.done)
	t := time.NewTicker(accessLogFlushEvery)
	defer t.Stop()
	spare := make([]byte, 0, accessLogFlushAt)
	for {
		select {
		case <-t.C:
		case <-a.wake:
		case <-a.stop:
			a.flush(spare)
			return
		}
		spare = a.flush(spare)
	}
}

// flush swaps the buffer for spare, writes what was in it and returns it emptied, to be
// the next spare.
func (a *accessLog) flush(spare []byte) []byte {
	a.mu.Lock()
	out, drops := a.buf, a.drops
	a.buf, a.drops = spare[:0], 0
	a.mu.Unlock()
	if drops > 0 {
		out = append(out, `{"time":"`...)
		out = time.Now().UTC().AppendFormat(out, time.RFC3339Nano)
		out = append(out, `","level":"WARN","msg":"access log lines dropped: the destination was too slow","component":"gateway","dropped":`...)
		out = strconv.AppendInt(out, int64(drops), 10)
		out = append(out, "}\n"...)
	}
	if len(out) > 0 {
		_, _ = a.dst.Write(out)
	}
	if cap(out) > 4*accessLogFlushAt {
		return make([]byte, 0, accessLogFlushAt) // do not keep a buffer a stall grew
	}
	return out[:0]
}

// write queues one line. It never waits for the destination.
func (a *accessLog) write(line []byte) {
	a.mu.Lock()
	if len(a.buf)+len(line) > accessLogMaxBuffer {
		a.drops++
		a.mu.Unlock()
		if a.dropped != nil {
			a.dropped.Inc()
		}
		return
	}
	a.buf = append(a.buf, line...)
	full := len(a.buf) >= accessLogFlushAt
	a.mu.Unlock()
	if full {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// close writes what is buffered and stops the flusher.
func (a *accessLog) close() {
	close(a.stop)
	<-a.done
}

// logLine is what one access-log line reports. It never holds a token or a query string.
type logLine struct {
	time      time.Time
	requestID string
	method    string
	path      string
	route     string
	status    int
	bytes     int64
	latency   time.Duration
	clientIP  string
	clientID  string
	subject   string
	reason    string
}

// appendJSON appends l as one JSON object and a newline.
func (l *logLine) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = l.time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","component":"gateway","request_id":`...)
	b = appendJSONString(b, l.requestID)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, l.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, l.path)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, l.route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, l.bytes, 10)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, float64(l.latency.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"client_ip":`...)
	b = appendJSONString(b, l.clientIP)
	if l.clientID != "" {
		b = append(b, `,"client_id":`...)
		b = appendJSONString(b, l.clientID)
	}
	if l.subject != "" {
		b = append(b, `,"sub":`...)
		b = appendJSONString(b, l.subject)
	}
	if l.reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, l.reason)
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD and every control
// character, '<', '>' and '&' are escaped, so a log line can never be split or forged.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

const slogInfo = slog.LevelInfo

// attrs is the line as slog attributes, for a gateway without an access-log writer.
func (l *logLine) attrs() []slog.Attr {
	a := []slog.Attr{
		slog.String("request_id", l.requestID),
		slog.String("method", l.method),
		slog.String("path", l.path),
		slog.String("route", l.route),
		slog.Int("status", l.status),
		slog.Int64("bytes", l.bytes),
		slog.Float64("latency_ms", float64(l.latency.Microseconds())/1000),
		slog.String("client_ip", l.clientIP),
	}
	if l.clientID != "" {
		a = append(a, slog.String("client_id", l.clientID))
	}
	if l.subject != "" {
		a = append(a, slog.String("sub", l.subject))
	}
	if l.reason != "" {
		a = append(a, slog.String("reason", l.reason))
	}
	return a
}
