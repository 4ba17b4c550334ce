package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testMaxHead = 4096

// scanOutcome is what the validator concluded about a byte stream.
type scanOutcome struct {
	Requests int64
	FlagAt   int64
	Flag     string
	Idle     bool // between requests (not inside a head or body)
}

func outcome(f *framing) scanOutcome {
	at, why := f.flagged()
	return scanOutcome{Requests: f.requests, FlagAt: at, Flag: why.String(), Idle: f.state == fsRequestStart}
}

func scanString(raw string) scanOutcome {
	f := newFraming(testMaxHead)
	f.scan([]byte(raw))
	return outcome(f)
}

func clean(requests int64) scanOutcome {
	return scanOutcome{Requests: requests, FlagAt: -1, Flag: "clean", Idle: true}
}

func flaggedAt(requests, at int64, why framingFlag) scanOutcome {
	return scanOutcome{Requests: requests, FlagAt: at, Flag: why.String()}
}

const (
	getReq     = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	postCL     = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	smuggled   = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n"
	postChunks = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
)

func TestFramingTable(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want scanOutcome
	}{
		// Clean streams.
		{"one get", getReq, clean(1)},
		{"pipelined", getReq + postCL + postChunks + getReq, clean(4)},
		{"chunk extensions and trailers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val;q=\"a b\"\r\nhello\r\nA\r\n0123456789\r\n0;last\r\nX-Trailer: t\r\nX-Other:\r\n\r\n" + getReq, clean(2)},
		{"te case and white space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \t Chunked \r\n\r\n0\r\n\r\n", clean(1)},
		{"cl white space and leading zeros", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  005 \r\n\r\nhello" + getReq, clean(2)},
		{"cl zero", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + getReq, clean(2)},
		{"crlf after post is skipped", postCL + "\r\n" + getReq, clean(2)},
		{"four cr/lf after post", postCL + "\r\n\n\r" + getReq, clean(2)},
		{"http/1.0 with content-length", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", clean(1)},
		{"body bytes that look like a request", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 28\r\n\r\n" + getReq[:28] + getReq, clean(2)},
		{"header value with colons and tabs", "GET / HTTP/1.1\r\nHost: x:1\r\nX-A: a:\tb\r\n\r\n", clean(1)},
		{"partial head", "GET / HTTP/1.1\r\nHost: x\r\n", scanOutcome{Requests: 1, FlagAt: -1, Flag: "clean"}},

		// Content-Length and Transfer-Encoding together, either order.
		{"cl then te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingCLAndTE)},
		{"te then cl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", flaggedAt(1, 0, framingCLAndTE)},
		{"cl zero and te", "POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n", flaggedAt(1, 0, framingCLAndTE)},
		// Duplicate Content-Length, even with equal values (net/http merges those).
		{"duplicate equal cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", flaggedAt(1, 0, framingDuplicateCL)},
		{"duplicate different cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello", flaggedAt(1, 0, framingDuplicateCL)},
		{"duplicate cl other case", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nCONTENT-LENGTH: 5\r\n\r\nhello", flaggedAt(1, 0, framingDuplicateCL)},
		// obs-fold.
		{"obs-fold in a header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", flaggedAt(1, 0, framingObsFold)},
		{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", flaggedAt(1, 0, framingObsFold)},
		{"obs-fold in cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n 0\r\n\r\nhello", flaggedAt(1, 0, framingObsFold)},
		{"obs-fold in te", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"obs-fold continuing te", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingObsFold)},
		{"obs-fold first line", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", flaggedAt(1, 0, framingObsFold)},
		// Transfer-Encoding other than chunked.
		{"chunked, identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"identity, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"chunkedx", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"chunked chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked chunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"empty te", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"two te lines", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		{"te on http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadTE)},
		// Chunk sizes.
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + getReq, flaggedAt(1, 0, framingBadChunk)},
		{"chunk size empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk size trailing space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk size leading space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk size negative", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk size 17 digits", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk size bare lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk data too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk data bare lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk extension with nul", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"chunk extension too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("a", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		{"last chunk bare lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n", flaggedAt(1, 0, framingBadChunk)},
		// Trailers.
		{"trailer obs-fold", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n", flaggedAt(1, 0, framingObsFold)},
		{"trailer ends with bare lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n" + getReq, flaggedAt(1, 0, framingBareLF)},
		{"trailer may say content-length", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 99\r\n\r\n" + getReq, clean(2)},
		{"trailer too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("a", testMaxHead) + "\r\n\r\n", flaggedAt(1, 0, framingHeadTooLarge)},
		// Line endings.
		{"bare lf request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBareLF)},
		{"bare lf header", "GET / HTTP/1.1\r\nHost: x\n\r\n", flaggedAt(1, 0, framingBareLF)},
		{"bare lf end of head", "GET / HTTP/1.1\r\nHost: x\r\n\n", flaggedAt(1, 0, framingBareLF)},
		{"lf only", "GET / HTTP/1.1\nHost: x\n\n", flaggedAt(1, 0, framingBareLF)},
		{"bare lf in name", "GET / HTTP/1.1\r\nHost\n: x\r\n\r\n", flaggedAt(1, 0, framingBareLF)},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", flaggedAt(1, 0, framingBareCR)},
		{"bare cr after request line", "GET / HTTP/1.1\rHost: x\r\n\r\n", flaggedAt(1, 0, framingBareCR)},
		{"cr cr lf", "GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", flaggedAt(1, 0, framingBareCR)},
		// Field names.
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", flaggedAt(1, 0, framingSpaceBeforeColon)},
		{"tab before colon", "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n", flaggedAt(1, 0, framingSpaceBeforeColon)},
		{"no colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", flaggedAt(1, 0, framingSpaceBeforeColon)},
		{"no colon no space", "GET / HTTP/1.1\r\nHost\r\n\r\n", flaggedAt(1, 0, framingBadHeaderLine)},
		{"empty name", "GET / HTTP/1.1\r\n: x\r\n\r\n", flaggedAt(1, 0, framingBadHeaderLine)},
		{"name with slash", "GET / HTTP/1.1\r\nContent/Length: 5\r\n\r\n", flaggedAt(1, 0, framingBadHeaderLine)},
		{"name with nul", "GET / HTTP/1.1\r\nContent-Length\x00: 5\r\n\r\n", flaggedAt(1, 0, framingBadHeaderLine)},
		// Content-Length values.
		{"cl plus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", flaggedAt(1, 0, framingBadCL)},
		{"cl list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", flaggedAt(1, 0, framingBadCL)},
		{"cl two numbers", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\nhello", flaggedAt(1, 0, framingBadCL)},
		{"cl empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", flaggedAt(1, 0, framingBadCL)},
		{"cl hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", flaggedAt(1, 0, framingBadCL)},
		{"cl overflow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\n", flaggedAt(1, 0, framingBadCL)},
		// Request lines.
		{"http/0.9", "GET /\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"http/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"long version", "GET / HTTP/1.10\r\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"no method", " / HTTP/1.1\r\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"control in target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", flaggedAt(1, 0, framingBadRequestLine)},
		{"leading crlf", "\r\n" + getReq, flaggedAt(1, 0, framingBadRequestLine)},
		{"crlf after get is not skipped", getReq + "\r\n" + getReq, flaggedAt(2, 1, framingBadRequestLine)},
		{"too many crlf after post", postCL + "\r\n\r\n\r\n" + getReq, flaggedAt(2, 1, framingBadRequestLine)},
		// Limits and position.
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", testMaxHead) + "\r\n\r\n", flaggedAt(1, 0, framingHeadTooLarge)},
		{"second request flagged", getReq + "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", flaggedAt(2, 1, framingDuplicateCL)},
		{"smuggled request in a body is not parsed", fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled) + getReq, clean(2)},
		{"parsing stops at the first problem", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n" + getReq + getReq, flaggedAt(1, 0, framingObsFold)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanString(tt.raw)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			// The same bytes one at a time, as a slow client sends them.
			f := newFraming(testMaxHead)
			for i := 0; i < len(tt.raw); i++ {
				f.scan([]byte{tt.raw[i]})
			}
			if diff := cmp.Diff(got, outcome(f)); diff != "" {
				t.Errorf("byte by byte differs from whole (-whole +bytes):\n%s", diff)
			}
		})
	}
}

// trace scans data one byte at a time and returns the offsets where the validator saw each
// request begin and end. A request that is flagged, or not finished, has no end.
func trace(data []byte, maxHead int) (starts, ends []int, f *framing) {
	f = newFraming(maxHead)
	for i := range data {
		before, state := f.requests, f.state
		f.scan(data[i : i+1])
		if f.requests != before {
			starts = append(starts, i)
		}
		if f.state == fsRequestStart && state != fsRequestStart {
			ends = append(ends, i+1)
		}
	}
	return starts, ends, f
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// netHTTPBoundaries reads data the way net/http's server does (http.ReadRequest, the whole
// body with its trailers, and the CR/LF tolerance after a POST) and returns where each
// request it accepted began and ended.
func netHTTPBoundaries(data []byte) (starts, ends []int) {
	cr := &countingReader{r: bytes.NewReader(data)}
	br := bufio.NewReader(cr)
	pos := func() int { return cr.n - br.Buffered() }
	lastPOST := false
	for {
		if lastPOST {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = br.Discard(n)
		}
		if _, err := br.Peek(1); err != nil {
			return starts, ends
		}
		start := pos()
		req, err := http.ReadRequest(br)
		if err != nil {
			return starts, ends
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return starts, ends
		}
		starts = append(starts, start)
		ends = append(ends, pos())
		lastPOST = req.Method == "POST"
	}
}

// checkBoundaries is the validator's contract with net/http: for every request that both
// accept, they agree on where it begins and ends, so the validator is in step with the
// server on the next request too.
func checkBoundaries(t *testing.T, data []byte) {
	t.Helper()
	vs, ve, f := trace(data, 1<<20)
	ns, ne := netHTTPBoundaries(data)
	at, _ := f.flagged()
	for i := range ne {
		if at >= 0 && int64(i) >= at {
			return // the validator refused this request: no agreement needed
		}
		if i >= len(vs) || i >= len(ve) {
			t.Fatalf("net/http read request %d at [%d,%d) but the validator did not finish it (starts %v ends %v)\n%q", i, ns[i], ne[i], vs, ve, data)
		}
		if vs[i] != ns[i] || ve[i] != ne[i] {
			t.Fatalf("request %d: validator [%d,%d), net/http [%d,%d)\n%q", i, vs[i], ve[i], ns[i], ne[i], data)
		}
	}
}

// genRequest writes one well-formed request with a random method, headers and framing.
func genRequest(r *rand.Rand, b *bytes.Buffer) {
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"}
	m := methods[r.IntN(len(methods))]
	version := "HTTP/1.1"
	if r.IntN(8) == 0 {
		version = "HTTP/1.0"
	}
	fmt.Fprintf(b, "%s /p/%d?q=%d %s\r\nHost: h%d\r\n", m, r.IntN(100), r.IntN(10), version, r.IntN(3))
	for range r.IntN(4) {
		fmt.Fprintf(b, "X-H%d: %s\r\n", r.IntN(9), strings.Repeat("v", r.IntN(40)))
	}
	body := strings.Repeat("GET / HTTP/1.1\r\n"[:1+r.IntN(16)], r.IntN(4))
	switch k := r.IntN(3); {
	case k == 1 && version == "HTTP/1.1":
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		rest := body
		for len(rest) > 0 {
			n := 1 + r.IntN(len(rest))
			fmt.Fprintf(b, "%x", n)
			if r.IntN(3) == 0 {
				b.WriteString(";ext=\"v\"")
			}
			b.WriteString("\r\n" + rest[:n] + "\r\n")
			rest = rest[n:]
		}
		b.WriteString("0\r\n")
		if r.IntN(3) == 0 {
			b.WriteString("X-Trailer: t\r\n")
		}
		b.WriteString("\r\n")
	case k == 2 || body != "":
		fmt.Fprintf(b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	default:
		b.WriteString("\r\n")
	}
	if m == "POST" && r.IntN(3) == 0 {
		b.WriteString("\r\n"[:1+r.IntN(2)])
	}
}

func genPipeline(r *rand.Rand) []byte {
	var b bytes.Buffer
	for range 1 + r.IntN(5) {
		genRequest(r, &b)
	}
	return b.Bytes()
}

// TestFramingMatchesNetHTTP: on well-formed pipelines the validator never flags anything
// and finds exactly net/http's request boundaries.
func TestFramingMatchesNetHTTP(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		data := genPipeline(r)
		vs, ve, f := trace(data, 1<<20)
		ns, ne := netHTTPBoundaries(data)
		if at, why := f.flagged(); at >= 0 {
			t.Fatalf("case %d: flagged request %d: %s\n%q", i, at, why, data)
		}
		if !cmp.Equal(vs, ns) || !cmp.Equal(ve, ne) {
			t.Fatalf("case %d: validator starts %v ends %v, net/http starts %v ends %v\n%q", i, vs, ve, ns, ne, data)
		}
	}
}

// FuzzFramingValidator: no input makes the validator panic; how the input is split into
// reads does not change its conclusion; and wherever net/http accepts a request the
// validator did not refuse, both find the same request boundaries.
func FuzzFramingValidator(f *testing.F) {
	for _, s := range []string{getReq + postCL + postChunks, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"} {
		f.Add([]byte(s), uint16(7))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		f.Add(genPipeline(r), uint16(r.Uint32()))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		whole := newFraming(testMaxHead)
		whole.scan(data)
		parts := newFraming(testMaxHead)
		step := int(split%61) + 1
		for i := 0; i < len(data); i += step {
			parts.scan(data[i:min(i+step, len(data))])
		}
		if a, b := outcome(whole), outcome(parts); a != b {
			t.Fatalf("split by %d: %+v, whole: %+v\n%q", step, b, a, data)
		}
		checkBoundaries(t, data)
		checkDelivered(t, data, step, int(split>>8)%4096+1)
	})
}

// scriptConn is a connection that hands out data step bytes at a time, then io.EOF.
type scriptConn struct {
	net.Conn
	data []byte
	step int
}

func (s *scriptConn) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.step)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// readThrough reads data through a framedConn (the network giving step bytes per read, the
// reader asking for size bytes) and returns what the reader got and the error that ended it.
func readThrough(data []byte, step, size int) ([]byte, error, *framedConn) {
	fc := &framedConn{Conn: &scriptConn{data: data, step: step}}
	fc.init(edgeSettings{maxHead: testMaxHead}, nil)
	var got []byte
	p := make([]byte, size)
	for {
		n, err := fc.Read(p)
		got = append(got, p[:n]...)
		if err != nil {
			return got, err, fc
		}
	}
}

// checkDelivered checks what net/http receives of data: all of it when it is clean (but an
// incomplete head at the end); the
// requests before a refused head and then the stand-in; or, for a refused body, a prefix
// ending before the problem, then errFraming.
func checkDelivered(t *testing.T, data []byte, step, size int) {
	t.Helper()
	starts, _, f := trace(data, testMaxHead)
	got, err, fc := readThrough(data, step, size)
	at, _ := f.flagged()
	switch {
	case at < 0:
		want := data
		if f.inHead() {
			want = data[:starts[len(starts)-1]] // an incomplete head is never handed over
		}
		if !bytes.Equal(got, want) || err != io.EOF {
			t.Fatalf("step %d size %d: clean stream delivered %q, %v; want %q", step, size, got, err, want)
		}
	case f.stopInHead:
		want := append(append([]byte(nil), data[:starts[at]]...), refusedHead...)
		if !bytes.Equal(got, want) || err != io.EOF {
			t.Fatalf("step %d size %d: refused head: delivered %q, %v; want %q", step, size, got, err, want)
		}
	default:
		if !bytes.HasPrefix(data, got) || err != errFraming {
			t.Fatalf("step %d size %d: refused body: delivered %q, %v", step, size, got, err)
		}
	}
	if fc.outBuf != nil || fc.held != nil && !(at < 0 && f.inHead()) {
		t.Fatalf("step %d size %d: buffers not released", step, size)
	}
}

func TestFramedConnDelivers(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"clean pipeline", getReq + postCL + "\r\n" + postChunks + getReq},
		{"first head refused", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n" + getReq},
		{"second head refused", postCL + "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n"},
		{"third head refused late", getReq + getReq + "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 40) + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
		{"head too large", getReq + "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", testMaxHead) + "\r\n\r\n"},
		{"body refused", postChunks + "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nGET /admin HTTP/1.1\r\n\r\n"},
		{"incomplete head", getReq + "GET / HTTP/1.1\r\nHost:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{1, 2, 3, 7, 64, 4096} {
				for _, size := range []int{1, 5, 4096} {
					checkDelivered(t, []byte(tt.raw), step, size)
				}
			}
		})
	}
}

// TestFramedConnAdmit: the handler learns, request by request, which one to refuse.
func TestFramedConnAdmit(t *testing.T) {
	raw := getReq + getReq + "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n" + getReq
	_, _, fc := readThrough([]byte(raw), 4096, 4096)
	type verdict struct {
		Why     string
		StandIn bool
	}
	var got []verdict
	for range 4 {
		_, why, standIn := fc.admit()
		got = append(got, verdict{why.String(), standIn})
	}
	want := []verdict{{"clean", false}, {"clean", false}, {"obs_fold", true}, {"obs_fold", false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("admit (-want +got):\n%s", diff)
	}
}

func BenchmarkFramedConnRead(b *testing.B) {
	req := []byte("GET /api/orders/7 HTTP/1.1\r\nHost: gateway.example\r\nAuthorization: Bearer " + strings.Repeat("x", 43) + "\r\n\r\n")
	sc := &scriptConn{step: len(req)}
	fc := &framedConn{Conn: sc}
	fc.init(edgeSettings{maxHead: testMaxHead}, nil)
	p := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		sc.data = req
		if n, err := fc.Read(p); n != len(req) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkFramingScan(b *testing.B) {
	req := []byte("GET /api/orders/7?expand=items HTTP/1.1\r\nHost: gateway.example:8443\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip\r\nAuthorization: Bearer " + strings.Repeat("x", 43) + "\r\n\r\n")
	f := newFraming(testMaxHead)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		f.scan(req)
	}
	if at, _ := f.flagged(); at >= 0 {
		b.Fatal("flagged")
	}
}
