package socketmap

import (
	"bytes"
	"strconv"
	"strings"
)

// Request is one lookup: the socketmap name the client was configured with
// (the last field of socketmap:inet:host:port:NAME) and the key.
type Request struct {
	Name string
	Key  string
}

// ParseRequest splits a request payload at its first space into name and
// key. A payload without a space is all name and an empty key, which is
// what the Debian peer makes of it too.
func ParseRequest(payload []byte) Request {
	name, key, _ := bytes.Cut(payload, []byte{' '})
	return Request{Name: string(name), Key: string(key)}
}

// Status is the first word of a reply.
type Status string

// Reply statuses (socketmap_table(5)).
const (
	OK       Status = "OK"       // found; Data is the value
	NotFound Status = "NOTFOUND" // not found
	Temp     Status = "TEMP"     // temporary failure: Postfix defers the delivery
	Timeout  Status = "TIMEOUT"  // the server timed out: Postfix defers
	Perm     Status = "PERM"     // permanent failure: Postfix treats it as a configuration error and defers
)

// Reply is one answer. For OK, Data is the value; for the failures it is
// an optional reason.
type Reply struct {
	Status Status
	Data   string
}

// String is the reply payload as sent: "STATUS DATA". NOTFOUND keeps its
// trailing space ("NOTFOUND "), as Postfix documents it and the peers send
// it.
func (r Reply) String() string {
	return string(r.Status) + " " + r.Data
}

// Append appends the reply as a netstring to dst. A reply longer than
// MaxReply, which Postfix would refuse as a broken server, is replaced by
// a TEMP reply that says so.
func (r Reply) Append(dst []byte) []byte {
	n := len(r.Status) + 1 + len(r.Data)
	if n > MaxReply {
		return Reply{Status: Temp, Data: "reply too long for Postfix"}.Append(dst)
	}
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, ':')
	dst = append(dst, r.Status...)
	dst = append(dst, ' ')
	dst = append(dst, r.Data...)
	return append(dst, ',')
}

// ParseReply reads a reply payload (the client side, for tools and tests).
func ParseReply(payload string) Reply {
	status, data, _ := strings.Cut(payload, " ")
	return Reply{Status: Status(status), Data: data}
}
