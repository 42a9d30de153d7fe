package mtasts

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Content codings (RFC 9110 §8.4). RFC 8461 says nothing about them, but a
// sender's HTTP library decides which codings it asks for and which it
// decodes, so a policy served with Content-Encoding can reach some senders
// and not others. The scan fetches the policy once without Accept-Encoding
// and once with each header below, and each sender model reads the
// response its own request got.

// httpClient is how a sender's HTTP library handles content codings.
type httpClient struct {
	name           string // for messages
	acceptEncoding string // the Accept-Encoding it sends; "" for none
	// decoder maps a Content-Encoding value to the decoding it applies:
	// ok false when it fails on it, "" when it reads the body as is.
	decoder func(coding string) (dec decoding, ok bool)
}

// decoding is one content decoding.
type decoding struct {
	name    string // "gzip" or "deflate"; "" reads the body as is
	lenient bool   // a gzip stream cut short is read as far as it goes
}

var (
	// rfcClient is the reference: no Accept-Encoding, and the codings an
	// HTTP client is expected to decode (gzip, its alias x-gzip, and
	// deflate, RFC 9110 §8.4.1); others cannot be read.
	rfcClient = httpClient{name: "mailtls", decoder: func(c string) (decoding, bool) {
		switch strings.ToLower(c) {
		case "", "identity":
			return decoding{}, true
		case "gzip", "x-gzip":
			return decoding{name: "gzip"}, true
		case "deflate":
			return decoding{name: "deflate"}, true
		}
		return decoding{}, false
	}}
	// goClient is Go's net/http (mox, go-mtasts, postfix-tlspol): it sends
	// "Accept-Encoding: gzip" and decodes exactly "gzip" (any case); any
	// other coding reaches the parser undecoded.
	goClient = httpClient{name: "Go's net/http", acceptEncoding: "gzip", decoder: func(c string) (decoding, bool) {
		if strings.EqualFold(c, "gzip") {
			return decoding{name: "gzip"}, true
		}
		return decoding{}, true
	}}
	// aiohttpClient is aiohttp 3.8 (postfix-mta-sts-resolver): it sends
	// "Accept-Encoding: gzip, deflate" and decodes gzip (a stream cut short
	// is read as far as it goes), deflate (zlib or raw) and br, the last
	// only with the Python brotli module, which the resolver does not
	// require; any other coding reaches the parser undecoded.
	aiohttpClient = httpClient{name: "aiohttp", acceptEncoding: "gzip, deflate", decoder: func(c string) (decoding, bool) {
		switch strings.ToLower(c) {
		case "gzip":
			return decoding{name: "gzip", lenient: true}, true
		case "deflate":
			return decoding{name: "deflate"}, true
		case "br":
			return decoding{}, false
		}
		return decoding{}, true
	}}
)

// AcceptEncodings returns the Accept-Encoding headers the modelled senders
// send, each once, for the scan to fetch the policy with.
func AcceptEncodings() []string {
	var out []string
	for _, c := range []httpClient{rfcClient, goClient, aiohttpClient} {
		if c.acceptEncoding != "" && !contains(out, c.acceptEncoding) {
			out = append(out, c.acceptEncoding)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// errTooLarge is returned by decode when the decoded body exceeds the cap.
var errTooLarge = errors.New("mtasts: decoded body larger than 64 KiB")

// decode undoes a content coding, reading at most MaxPolicySize+1 decoded
// bytes so that a small compressed body cannot expand without bound (a
// gzip bomb).
func decode(d decoding, raw []byte) ([]byte, error) {
	var r io.Reader
	switch d.name {
	case "":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		r = zr
	case "deflate":
		// "deflate" is the zlib format (RFC 9110 §8.4.1.2); servers that
		// send raw deflate are common enough that clients accept both.
		if len(raw) > 0 && raw[0]&0x0f == 8 {
			zr, err := zlib.NewReader(bytes.NewReader(raw))
			if err != nil {
				return nil, err
			}
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(raw))
		}
	default:
		return nil, fmt.Errorf("mtasts: unknown decoding %q", d.name)
	}
	body, err := io.ReadAll(io.LimitReader(r, MaxPolicySize+1))
	if len(body) > MaxPolicySize {
		return body[:MaxPolicySize], errTooLarge
	}
	if err != nil && !(d.lenient && errors.Is(err, io.ErrUnexpectedEOF)) {
		return nil, err
	}
	return body, nil
}

// Response is one HTTP response to the policy request.
type Response struct {
	Status          int // 0 is read as 200
	ContentType     string
	HasContentType  bool
	ContentEncoding string // "" when absent
	Body            []byte // as received, at most 64 KiB
	TooLarge        bool   // the body was cut at 64 KiB
	Failed          string // the request failed: why
}

// reading is the body a sender reads after its HTTP library is done.
type reading struct {
	ContentType    string
	HasContentType bool
	Body           []byte
	TooLarge       bool
}

// read returns what client reads of the policy: the response to its
// request (the one without Accept-Encoding when the scan made no request
// with its header), decoded as it decodes. why says why it gets nothing.
func (in SenderInput) read(c httpClient) (rd reading, why string) {
	resp := Response{ContentType: in.ContentType, HasContentType: in.HasContentType, ContentEncoding: in.ContentEncoding, Body: in.Body, TooLarge: in.TooLarge}
	asked := "without Accept-Encoding"
	if c.acceptEncoding != "" {
		asked = "with Accept-Encoding: " + c.acceptEncoding
		if r, ok := in.Encoded[c.acceptEncoding]; ok && r != nil {
			resp = *r
		}
	}
	switch {
	case resp.Failed != "":
		return rd, "its request " + asked + " failed: " + resp.Failed
	case resp.Status != 0 && resp.Status != 200:
		return rd, fmt.Sprintf("its request %s is answered with status %d", asked, resp.Status)
	}
	rd = reading{ContentType: resp.ContentType, HasContentType: resp.HasContentType, Body: resp.Body, TooLarge: resp.TooLarge}
	coding := strings.TrimSpace(resp.ContentEncoding)
	d, ok := c.decoder(coding)
	switch {
	case !ok:
		return rd, fmt.Sprintf("its request %s is answered with Content-Encoding: %s, which %s cannot decode", asked, coding, c.name)
	case d.name == "" && coding != "" && !strings.EqualFold(coding, "identity"):
		return rd, fmt.Sprintf("its request %s is answered with Content-Encoding: %s, which %s does not decode, so it parses compressed bytes", asked, coding, c.name)
	case resp.TooLarge || d.name == "":
		return rd, ""
	}
	body, err := decode(d, resp.Body)
	switch {
	case errors.Is(err, errTooLarge):
		rd.Body, rd.TooLarge = body, true
	case err != nil:
		return rd, fmt.Sprintf("its request %s is answered with Content-Encoding: %s, but the body is not %s data (%v)", asked, coding, d.name, err)
	default:
		rd.Body = body
	}
	return rd, ""
}

// DecodedBody returns the body of a response as a client that asked for no
// content coding reads it (gzip and deflate decoded, at most 64 KiB), and
// whether it was larger; err says why it cannot be read.
func DecodedBody(contentEncoding string, raw []byte) (body []byte, tooLarge bool, err error) {
	coding := strings.TrimSpace(contentEncoding)
	d, ok := rfcClient.decoder(coding)
	if !ok {
		return nil, false, fmt.Errorf("Content-Encoding: %s is not a coding mailtls decodes (gzip, deflate)", coding)
	}
	body, err = decode(d, raw)
	if errors.Is(err, errTooLarge) {
		return body, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("the body labelled Content-Encoding: %s is not %s data (%v)", coding, d.name, err)
	}
	return body, false, nil
}
