package gateway

import (
	"bytes"
	"math"
	"sync/atomic"
)

// framingFlag names why a request's framing was refused. The zero value is "clean".
type framingFlag uint32

const (
	framingClean            framingFlag = iota
	framingCLAndTE                      // both Content-Length and Transfer-Encoding
	framingDuplicateCL                  // more than one Content-Length line, even with equal values
	framingObsFold                      // a header line starting with SP or HT (RFC 9112 §5.2)
	framingBadTE                        // a Transfer-Encoding other than chunked, two of them, or one on HTTP/1.0
	framingBadChunk                     // a malformed chunk-size line, chunk end or last chunk
	framingBareLF                       // a line ending in LF without CR
	framingBareCR                       // a CR not followed by LF
	framingSpaceBeforeColon             // white space between a field name and its colon
	framingBadCL                        // a Content-Length that is not one decimal number
	framingBadRequestLine               // a request line that is not METHOD SP target SP HTTP/1.x
	framingBadHeaderLine                // a header line without a colon or with an invalid name
	framingHeadTooLarge                 // a head or trailer section larger than net/http could accept
	numFramingFlags
)

var framingReasons = [numFramingFlags]string{
	framingClean:            "clean",
	framingCLAndTE:          "cl_and_te",
	framingDuplicateCL:      "duplicate_content_length",
	framingObsFold:          "obs_fold",
	framingBadTE:            "bad_transfer_encoding",
	framingBadChunk:         "bad_chunk",
	framingBareLF:           "bare_lf",
	framingBareCR:           "bare_cr",
	framingSpaceBeforeColon: "space_before_colon",
	framingBadCL:            "bad_content_length",
	framingBadRequestLine:   "bad_request_line",
	framingBadHeaderLine:    "bad_header_line",
	framingHeadTooLarge:     "head_too_large",
}

// framingLogReasons are the access log's reasons of framing refusals.
var framingLogReasons = func() (r [numFramingFlags]string) {
	for i, s := range framingReasons {
		r[i] = "bad_framing:" + s
	}
	return r
}()

func (f framingFlag) String() string {
	if f < numFramingFlags {
		return framingReasons[f]
	}
	return "unknown"
}

// Scanner states. Head, chunk-size and trailer states go byte by byte (with fast paths over
// request targets, field names and ordinary field values); body states skip whole spans.
const (
	fsRequestStart uint8 = iota // before a request line (after POST, up to 4 CR/LF are skipped)
	fsMethod
	fsTarget
	fsVersion
	fsRequestLineLF // CR seen at the end of the request line
	fsLineStart     // start of a header (or trailer) line, or of the blank line ending the section
	fsName
	fsValue
	fsValueLF   // CR seen at the end of a field line
	fsSectionLF // CR seen on the blank line ending the head or trailer section
	fsBody      // Content-Length body bytes
	fsChunkSize
	fsChunkExt
	fsChunkSizeLF
	fsChunkData
	fsChunkDataCR
	fsChunkDataLF
	fsStopped // flagged: everything passes through unparsed
)

// maxChunkLine is net/http's limit on a chunk-size line (internal/chunked.go).
const maxChunkLine = 4096

// framing is a strict HTTP/1.x request framing validator. It watches the bytes a server
// reads from one connection and follows each request (request line, header fields, then a
// Content-Length or chunked body, with extensions and trailers) the way net/http will
// interpret them, so it stays in step with net/http request by request. It only watches:
// framedConn decides what reaches net/http. It flags what net/http would tolerate or
// normalise silently but what makes request smuggling possible; after the first flag it
// stops parsing.
//
// scan is called by the one goroutine reading the connection at a time, which alone uses
// pos, lastStart, stopPos and stopInHead. flaggedAt, flagReason and flaggedInHead may be
// read concurrently (by the handler).
type framing struct {
	state    uint8
	maxHead  int   // bytes a head or trailer section may take
	headLen  int   // bytes of the current head or trailer section
	requests int64 // request heads begun; the current request's index is requests-1
	skipCRLF int8  // leading CR/LF bytes net/http discards before the next request line

	// request line
	methodLen int
	isPOST    bool
	targetLen int
	version   [8]byte
	versionN  int
	http10    bool

	// field lines
	trailer  bool // in the trailer section of a chunked body
	nameLen  int
	matchCL  bool // the field name so far is a prefix of content-length
	matchTE  bool // ... of transfer-encoding
	lineCL   bool // this line is Content-Length
	lineTE   bool // this line is Transfer-Encoding
	valState uint8
	clLines  int
	teLines  int
	clValue  uint64
	clDigits int
	teMatch  int // bytes of "chunked" matched

	// bodies
	remain    uint64 // Content-Length bytes or chunk data left
	chunkSize uint64
	chunkHex  int
	chunkLine int
	// where things happened in the bytes of the last scan call
	pos        int  // index of the byte being judged
	lastStart  int  // index where the latest request began (-1: none began in this call)
	stopPos    int  // index of the byte that stopped parsing
	stopInHead bool // the problem is in a request head (not a body or trailer section)

	flaggedAt     atomic.Int64
	flagReason    atomic.Uint32
	flaggedInHead atomic.Bool
}

// Value sub-states of Content-Length and Transfer-Encoding lines.
const (
	valLeadingOWS uint8 = iota
	valToken
	valTrailingOWS
)

func newFraming(maxHead int) *framing {
	f := &framing{maxHead: maxHead}
	f.flaggedAt.Store(-1)
	return f
}

func (f *framing) init(maxHead int) {
	f.maxHead = maxHead
	f.flaggedAt.Store(-1)
}

// flagged returns the first problem found and the index of the request it belongs to
// (-1 and framingClean when none).
func (f *framing) flagged() (int64, framingFlag) {
	at := f.flaggedAt.Load()
	if at < 0 {
		return -1, framingClean
	}
	return at, framingFlag(f.flagReason.Load())
}

// stop records a problem of the current request and ends parsing.
func (f *framing) stop(why framingFlag) {
	idx := f.requests - 1
	if idx < 0 {
		idx = 0
	}
	f.stopPos = f.pos
	f.stopInHead = f.inHead()
	f.flaggedInHead.Store(f.stopInHead)
	f.flagReason.Store(uint32(why))
	f.flaggedAt.Store(idx)
	f.state = fsStopped
}

// tokenByte reports whether c may appear in an RFC 9110 token (a method or field name).
func tokenByte(c byte) bool { return tokenTable[c] }

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

const (
	nameCL = "content-length"
	nameTE = "transfer-encoding"
)

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// inHead reports whether the validator is inside a request head (not a body, nor the
// trailer section of a chunked body).
func (f *framing) inHead() bool {
	return f.state >= fsMethod && f.state <= fsSectionLF && !f.trailer
}

// scan follows p, the next bytes read from the connection.
func (f *framing) scan(p []byte) {
	f.lastStart = -1
	for i := 0; i < len(p); {
		f.pos = i
		switch f.state {
		case fsStopped:
			return
		case fsBody:
			n := uint64(len(p) - i)
			if n >= f.remain {
				i += int(f.remain)
				f.remain = 0
				f.requestDone()
				continue
			}
			f.remain -= n
			return
		case fsChunkData:
			n := uint64(len(p) - i)
			if n >= f.remain {
				i += int(f.remain)
				f.remain = 0
				f.state = fsChunkDataCR
				continue
			}
			f.remain -= n
			return
		case fsTarget:
			// Fast path: the bytes of a request target, up to the SP (or the control
			// byte) that step judges.
			j := i
			for j < len(p) && targetTable[p[j]] {
				j++
			}
			if !f.addHead(j - i) {
				return
			}
			f.targetLen += j - i
			if i = j; i == len(p) {
				return
			}
		case fsName:
			// Fast path: the token bytes of a field name, matched against the two names
			// that frame a body; the byte that ends the name goes to step.
			j := i
			for j < len(p) && tokenTable[p[j]] {
				if f.matchCL || f.matchTE {
					lc := lower(p[j])
					f.matchCL = f.matchCL && f.nameLen < len(nameCL) && lc == nameCL[f.nameLen]
					f.matchTE = f.matchTE && f.nameLen < len(nameTE) && lc == nameTE[f.nameLen]
				}
				f.nameLen++
				j++
			}
			if !f.addHead(j - i) {
				return
			}
			if i = j; i == len(p) {
				return
			}
		case fsValue:
			if f.lineCL || f.lineTE {
				break
			}
			// Fast path: an ordinary field value runs to its CR; a LF before it is bare.
			rest := p[i:]
			seg := rest
			cr := bytes.IndexByte(rest, '\r')
			if cr >= 0 {
				seg = rest[:cr]
			}
			if lf := bytes.IndexByte(seg, '\n'); lf >= 0 {
				if f.addHead(lf + 1) {
					f.stop(framingBareLF)
				}
				return
			}
			if !f.addHead(len(seg)) || cr < 0 {
				return
			}
			i += cr
		}
		f.pos = i
		f.step(p[i])
		i++
	}
}

// addHead counts n more bytes of a head or trailer section and reports whether they fit.
func (f *framing) addHead(n int) bool {
	f.headLen += n
	if f.headLen > f.maxHead {
		f.stop(framingHeadTooLarge)
		return false
	}
	return true
}

// targetTable marks the bytes a request target runs over: everything but SP and controls.
var targetTable = func() (t [256]bool) {
	for c := 0x21; c < 256; c++ {
		t[c] = c != 0x7f
	}
	return t
}()

// step follows one byte of a head, a chunk-size line or a trailer section.
func (f *framing) step(c byte) {
	switch f.state {
	case fsRequestStart:
		if f.skipCRLF > 0 && (c == '\r' || c == '\n') {
			f.skipCRLF--
			return
		}
		f.lastStart = f.pos
		f.beginRequest()
		f.stepMethod(c)
		return
	}

	if f.state < fsBody { // a head or trailer section
		f.headLen++
		if f.headLen > f.maxHead {
			f.stop(framingHeadTooLarge)
			return
		}
	}

	switch f.state {
	case fsMethod:
		f.stepMethod(c)
	case fsTarget:
		switch {
		case c == ' ':
			if f.targetLen == 0 {
				f.stop(framingBadRequestLine)
				return
			}
			f.state = fsVersion
		case c < 0x20 || c == 0x7f:
			f.stop(framingBadRequestLine)
		default:
			f.targetLen++
		}
	case fsVersion:
		switch {
		case c == '\r':
			if !f.versionOK() {
				f.stop(framingBadRequestLine)
				return
			}
			f.state = fsRequestLineLF
		case c == '\n':
			f.stop(framingBareLF)
		case f.versionN == len(f.version):
			f.stop(framingBadRequestLine)
		default:
			f.version[f.versionN] = c
			f.versionN++
		}
	case fsRequestLineLF, fsValueLF:
		if c != '\n' {
			f.stop(framingBareCR)
			return
		}
		f.state = fsLineStart
	case fsLineStart:
		switch {
		case c == '\r':
			f.state = fsSectionLF
		case c == '\n':
			f.stop(framingBareLF)
		case c == ' ' || c == '\t':
			f.stop(framingObsFold)
		case tokenByte(c):
			f.state = fsName
			f.nameLen = 1
			lc := lower(c)
			f.matchCL = !f.trailer && lc == nameCL[0]
			f.matchTE = !f.trailer && lc == nameTE[0]
		default:
			f.stop(framingBadHeaderLine)
		}
	case fsName:
		switch {
		case c == ':':
			f.beginValue()
		case tokenByte(c):
			lc := lower(c)
			f.matchCL = f.matchCL && f.nameLen < len(nameCL) && lc == nameCL[f.nameLen]
			f.matchTE = f.matchTE && f.nameLen < len(nameTE) && lc == nameTE[f.nameLen]
			f.nameLen++
		case c == ' ' || c == '\t':
			f.stop(framingSpaceBeforeColon)
		case c == '\n':
			f.stop(framingBareLF)
		default:
			f.stop(framingBadHeaderLine)
		}
	case fsValue:
		switch c {
		case '\r':
			if !f.endValue() {
				return
			}
			f.state = fsValueLF
		case '\n':
			f.stop(framingBareLF)
		default:
			if f.lineCL {
				f.stepCL(c)
			} else if f.lineTE {
				f.stepTE(c)
			}
		}
	case fsSectionLF:
		if c != '\n' {
			f.stop(framingBareCR)
			return
		}
		if f.trailer {
			f.requestDone()
		} else {
			f.endHead()
		}
	case fsChunkSize:
		f.chunkLine++
		switch {
		case hexValue(c) >= 0:
			if f.chunkHex == 16 {
				f.stop(framingBadChunk) // net/http: "http chunk length too large"
				return
			}
			f.chunkHex++
			f.chunkSize = f.chunkSize<<4 | uint64(hexValue(c))
		case c == ';' && f.chunkHex > 0:
			f.state = fsChunkExt
		case c == '\r' && f.chunkHex > 0:
			f.state = fsChunkSizeLF
		default:
			f.stop(framingBadChunk) // empty size, white space, bare LF, anything else
		}
	case fsChunkExt:
		f.chunkLine++
		switch {
		case f.chunkLine >= maxChunkLine:
			f.stop(framingBadChunk)
		case c == '\r':
			f.state = fsChunkSizeLF
		case c == '\t':
		case c < 0x20 || c == 0x7f:
			f.stop(framingBadChunk)
		}
	case fsChunkSizeLF:
		if c != '\n' {
			f.stop(framingBadChunk)
			return
		}
		if f.chunkSize == 0 {
			f.trailer = true
			f.headLen = 0
			f.state = fsLineStart
			return
		}
		f.remain = f.chunkSize
		f.state = fsChunkData
	case fsChunkDataCR:
		if c != '\r' {
			f.stop(framingBadChunk)
			return
		}
		f.state = fsChunkDataLF
	case fsChunkDataLF:
		if c != '\n' {
			f.stop(framingBadChunk)
			return
		}
		f.beginChunk()
	}
}

func (f *framing) beginRequest() {
	f.requests++
	f.state = fsMethod
	f.headLen = 1
	f.methodLen, f.isPOST, f.targetLen, f.versionN, f.http10 = 0, false, 0, 0, false
	f.trailer = false
	f.clLines, f.teLines, f.clValue, f.clDigits = 0, 0, 0, 0
}

func (f *framing) stepMethod(c byte) {
	switch {
	case tokenByte(c):
		f.isPOST = f.methodLen < 4 && c == "POST"[f.methodLen] && (f.methodLen == 0 || f.isPOST)
		f.methodLen++
	case c == ' ' && f.methodLen > 0:
		f.isPOST = f.isPOST && f.methodLen == 4
		f.state = fsTarget
	default:
		f.stop(framingBadRequestLine)
	}
}

// versionOK reports whether the request line's version is HTTP/1.x, the only ones this
// validator follows (net/http answers others with 505, or hands "PRI * HTTP/2.0" over).
func (f *framing) versionOK() bool {
	v := f.version
	if f.versionN != 8 || string(v[:7]) != "HTTP/1." || v[7] < '0' || v[7] > '9' {
		return false
	}
	f.http10 = v[7] == '0'
	return true
}

func (f *framing) beginValue() {
	f.state = fsValue
	f.lineCL = f.matchCL && f.nameLen == len(nameCL)
	f.lineTE = f.matchTE && f.nameLen == len(nameTE)
	f.valState = valLeadingOWS
	switch {
	case f.lineCL:
		f.clLines++
		if f.clLines > 1 {
			f.stop(framingDuplicateCL)
		}
	case f.lineTE:
		f.teLines++
		if f.teLines > 1 {
			f.stop(framingBadTE)
		}
		f.teMatch = 0
	}
}

// stepCL follows a Content-Length value: OWS 1*DIGIT OWS, no larger than net/http's
// strconv.ParseUint(v, 10, 63) accepts.
func (f *framing) stepCL(c byte) {
	switch {
	case c >= '0' && c <= '9' && f.valState != valTrailingOWS:
		d := uint64(c - '0')
		if f.clValue > (math.MaxInt64-d)/10 {
			f.stop(framingBadCL)
			return
		}
		f.clValue = f.clValue*10 + d
		f.clDigits++
		f.valState = valToken
	case c == ' ' || c == '\t':
		if f.valState == valToken {
			f.valState = valTrailingOWS
		}
	default:
		f.stop(framingBadCL)
	}
}

// stepTE follows a Transfer-Encoding value: OWS "chunked" OWS, case-insensitively (as
// net/http compares it).
func (f *framing) stepTE(c byte) {
	const chunked = "chunked"
	switch {
	case c == ' ' || c == '\t':
		if f.valState == valToken {
			f.valState = valTrailingOWS
		}
	case f.valState != valTrailingOWS && f.teMatch < len(chunked) && lower(c) == chunked[f.teMatch]:
		f.teMatch++
		f.valState = valToken
	default:
		f.stop(framingBadTE)
	}
}

// endValue checks a completed Content-Length or Transfer-Encoding value. It reports
// whether parsing goes on.
func (f *framing) endValue() bool {
	switch {
	case f.lineCL && f.clDigits == 0:
		f.stop(framingBadCL)
		return false
	case f.lineTE && f.teMatch != len("chunked"):
		f.stop(framingBadTE)
		return false
	}
	return true
}

// endHead decides the body's framing exactly as net/http does for the heads it lets
// through: chunked, Content-Length, or none (a request without either has no body).
func (f *framing) endHead() {
	switch {
	case f.teLines > 0 && f.clLines > 0:
		f.stop(framingCLAndTE)
	case f.teLines > 0 && f.http10:
		f.stop(framingBadTE) // net/http ignores it and would read the body some other way
	case f.teLines > 0:
		f.beginChunk()
	case f.clValue > 0:
		f.remain = f.clValue
		f.state = fsBody
	default:
		f.requestDone()
	}
}

func (f *framing) beginChunk() {
	f.state = fsChunkSize
	f.chunkSize, f.chunkHex, f.chunkLine = 0, 0, 0
}

func (f *framing) requestDone() {
	f.state = fsRequestStart
	f.skipCRLF = 0
	if f.isPOST {
		f.skipCRLF = 4 // net/http's tolerance for old clients after a POST (RFC 7230 §3.5)
	}
}

func hexValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
