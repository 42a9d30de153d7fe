package resolver

import (
	"time"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/stscache"
)

// EntryView is a cache entry as JSON, with readable times.
type EntryView struct {
	Domain      string                  `json:"domain"`
	InForce     bool                    `json:"policy_in_force"`
	PolicyID    string                  `json:"policy_id,omitempty"`
	Policy      *mtasts.Policy          `json:"policy,omitempty"`
	FetchedAt   *time.Time              `json:"fetched_at,omitempty"`
	Expires     *time.Time              `json:"expires,omitempty"`
	CheckedAt   *time.Time              `json:"checked_at,omitempty"`
	LastOutcome string                  `json:"last_outcome"`
	LastDetail  string                  `json:"last_detail,omitempty"`
	LastAt      *time.Time              `json:"last_at,omitempty"`
	FailedID    string                  `json:"failed_id,omitempty"`
	NextCheck   *time.Time              `json:"next_check,omitempty"`
	RefreshAt   *time.Time              `json:"refresh_at,omitempty"`
	DANE        *sendpolicy.DANEVerdict `json:"dane,omitempty"`
	DANEUntil   *time.Time              `json:"dane_until,omitempty"`
}

func unix[T int64 | uint32](s T) *time.Time {
	if s == 0 {
		return nil
	}
	t := time.Unix(int64(s), 0).UTC()
	return &t
}

// ViewEntry shows e at now.
func ViewEntry(e *stscache.Entry, now time.Time) *EntryView {
	if e == nil {
		return nil
	}
	v := &EntryView{Domain: e.Domain, InForce: e.Valid(now.Unix()), PolicyID: e.ID, Policy: e.Policy,
		FetchedAt: unix(e.FetchedAt), CheckedAt: unix(e.CheckedAt), LastOutcome: e.Outcome.String(), LastDetail: e.Detail,
		LastAt: unix(e.At), FailedID: e.FailedID, NextCheck: unix(e.NextCheck), RefreshAt: unix(e.RefreshAt),
		DANE: e.DANE, DANEUntil: unix(e.DANEUntil)}
	if e.Policy != nil {
		v.Expires = unix(e.Expires())
	}
	return v
}

// Explanation is the answer to one key and everything that led to it.
type Explanation struct {
	Key          string              `json:"key"`
	Domain       string              `json:"domain,omitempty"`
	Reply        string              `json:"reply"` // exactly what Postfix gets
	Decision     sendpolicy.Decision `json:"decision"`
	Reason       string              `json:"reason"` // why the rule decided
	Zone         sendpolicy.Zone     `json:"zone"`
	Cache        string              `json:"cache,omitempty"`
	DANECache    string              `json:"dane_cache,omitempty"`
	Entry        *EntryView          `json:"cache_entry,omitempty"`
	Discovery    *Discovery          `json:"discovery,omitempty"`
	DANEEvidence *DANEEvidence       `json:"dane_evidence,omitempty"`
}

// Explain puts a decision together with its evidence.
func Explain(key string, zone sendpolicy.Zone, d sendpolicy.Decision, res *Result, e *stscache.Entry, now time.Time) *Explanation {
	x := &Explanation{Key: key, Reply: d.Reply(zone).String(), Decision: d, Reason: d.Reason(), Zone: zone}
	if res != nil {
		x.Domain, x.Cache, x.DANECache, x.Discovery, x.DANEEvidence = res.Domain, res.Cache, res.DANECache, res.Discovery, res.DANEProof
		x.Entry = ViewEntry(e, now)
	}
	return x
}
