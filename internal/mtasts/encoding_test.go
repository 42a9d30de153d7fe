package mtasts

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"runtime"
	"strings"
	"testing"
)

// gzipped compresses s (writing to a bytes.Buffer cannot fail).
func gzipped(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

func rawDeflate(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

// TestSenderContentCodings: each sender reads the response its own request
// gets, decoded as its HTTP library decodes (issue 8 #5; RFC 9110 §8.4).
func TestSenderContentCodings(t *testing.T) {
	rec := []string{"v=STSv1; id=1"}
	plain := func(ce string, body []byte) *Response {
		return &Response{Status: 200, ContentType: "text/plain", HasContentType: true, ContentEncoding: ce, Body: body}
	}
	gz := gzipped(good)
	tests := []struct {
		name string
		in   SenderInput
		want map[string]bool // sender -> applies
	}{
		{"gzip sent although not asked for: every client decodes it",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, ContentEncoding: "gzip", Body: gz},
			map[string]bool{SenderRFC: true, SenderMox: true, SenderSnawoot: true, SenderTLSPol: true, SenderGoMTASTS: true}},
		{"plain body labelled gzip: no client reads it",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, ContentEncoding: "gzip", Body: []byte(good)},
			map[string]bool{SenderRFC: false, SenderMox: false, SenderSnawoot: false, SenderTLSPol: false, SenderGoMTASTS: false}},
		{"mislabelled only for Accept-Encoding: gzip",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good), Encoded: map[string]*Response{
				"gzip": plain("gzip", []byte(good)), "gzip, deflate": plain("", []byte(good))}},
			map[string]bool{SenderRFC: true, SenderMox: false, SenderSnawoot: true, SenderTLSPol: false, SenderGoMTASTS: false}},
		{"raw deflate for aiohttp",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good), Encoded: map[string]*Response{
				"gzip, deflate": plain("deflate", rawDeflate(t, good))}},
			map[string]bool{SenderRFC: true, SenderSnawoot: true, SenderMox: true}},
		{"deflate to Go's client, which does not decode it",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good), Encoded: map[string]*Response{
				"gzip": plain("deflate", rawDeflate(t, good))}},
			map[string]bool{SenderRFC: true, SenderMox: false, SenderTLSPol: false, SenderGoMTASTS: false, SenderSnawoot: true}},
		{"br: aiohttp without the brotli module fails, Go reads compressed bytes",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, ContentEncoding: "br", Body: []byte{0x1b, 0x03}},
			map[string]bool{SenderRFC: false, SenderMox: false, SenderSnawoot: false, SenderTLSPol: false, SenderGoMTASTS: false}},
		{"a gzip stream cut short: aiohttp reads what there is, Go fails",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, ContentEncoding: "gzip", Body: gz[:len(gz)-8]},
			map[string]bool{SenderRFC: false, SenderMox: false, SenderSnawoot: true}},
		{"the request with Accept-Encoding failed",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good), Encoded: map[string]*Response{
				"gzip": {Failed: "connection reset"}, "gzip, deflate": {Status: 406}}},
			map[string]bool{SenderRFC: true, SenderMox: false, SenderSnawoot: false}},
		{"identity is not a coding",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, ContentEncoding: "identity", Body: []byte(good)},
			map[string]bool{SenderRFC: true, SenderMox: true, SenderSnawoot: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := SenderViews(tt.in)
			for sender, want := range tt.want {
				v := view(vs, sender)
				if v.Applies != want {
					t.Errorf("%s applies = %v, want %v (%s)", sender, v.Applies, want, v.Reason)
				}
				if !v.Applies && sender != SenderRFC && !v.FailedOnCoding() {
					t.Errorf("%s fails for another reason than the coding: %s", sender, v.Reason)
				}
			}
		})
	}
}

// TestDecodeIsBounded: a small gzip body that expands to 16 MiB (a gzip
// bomb) is decoded only up to the 64 KiB cap (RFC 8461 §3.3).
func TestDecodeIsBounded(t *testing.T) {
	bomb := gzipped(good + strings.Repeat("x-pad: 0\r\n", 16<<20/10))
	if len(bomb) > 64<<10 {
		t.Fatalf("the bomb is %d bytes compressed", len(bomb))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	body, tooLarge, err := DecodedBody("gzip", bomb)
	runtime.ReadMemStats(&after)
	if err != nil || !tooLarge || len(body) != MaxPolicySize {
		t.Fatalf("DecodedBody = %d bytes, too large %v, %v", len(body), tooLarge, err)
	}
	// The decoder's own buffers are a few hundred KiB; decoding the whole
	// bomb would allocate well over 16 MiB.
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("decoding allocated %d bytes; the 64 KiB cap does not hold", n)
	}
	v := view(SenderViews(SenderInput{TXT: []string{"v=STSv1; id=1"}, ContentType: "text/plain", HasContentType: true, ContentEncoding: "gzip", Body: bomb}), SenderMox)
	if v.Applies || !strings.Contains(v.Reason, "64 KiB") {
		t.Errorf("mox = %+v, want no policy for a body over 64 KiB", v)
	}
	if _, _, err := DecodedBody("gzip", []byte(good)); err == nil {
		t.Error("a plain body labelled gzip decoded")
	}
	if _, _, err := DecodedBody("zstd", []byte(good)); err == nil {
		t.Error("zstd decoded")
	}
}

// FuzzDecodedBody: whatever the bytes and the label, decoding never yields
// more than 64 KiB and says why it fails.
func FuzzDecodedBody(f *testing.F) {
	f.Add("gzip", gzipped(good))
	f.Add("deflate", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	f.Add("gzip", []byte(good))
	f.Add("br", []byte{0x1b})
	f.Fuzz(func(t *testing.T, coding string, raw []byte) {
		body, tooLarge, err := DecodedBody(coding, raw)
		if err != nil && (body != nil || tooLarge) {
			t.Fatalf("error %v with a body", err)
		}
		if len(body) > MaxPolicySize {
			t.Fatalf("decoded %d bytes", len(body))
		}
	})
}
