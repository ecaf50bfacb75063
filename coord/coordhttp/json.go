package coordhttp

import (
	"time"

	"github.com/polystore/polystore/coord"
)

// Saga is a saga's record in the JSON API (coord.Info).
type Saga struct {
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Status    coord.Status `json:"status"`
	Step      int          `json:"step"`
	StepName  string       `json:"step_name"`
	Attempts  int          `json:"attempts"`
	Error     string       `json:"error"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
}

func sagaOf(i coord.Info) Saga {
	return Saga{ID: i.ID, Name: i.Name, Status: i.Status, Step: i.Step, StepName: i.StepName, Attempts: i.Attempts,
		Error: i.Error, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt}
}

func sagasOf(infos []coord.Info) []Saga {
	out := make([]Saga, len(infos))
	for i, info := range infos {
		out[i] = sagaOf(info)
	}
	return out
}

// Event is an event of a saga's timeline in the JSON API (coord.Event).
type Event struct {
	Seq      int64           `json:"seq"`
	At       time.Time       `json:"at"`
	Kind     coord.EventKind `json:"kind"`
	Step     int             `json:"step"`
	StepName string          `json:"step_name"`
	Attempt  int             `json:"attempt"`
	Error    string          `json:"error,omitempty"`
	Actor    string          `json:"actor"`
	Reason   string          `json:"reason,omitempty"`
}

func eventsOf(evs []coord.Event) []Event {
	out := make([]Event, len(evs))
	for i, ev := range evs {
		out[i] = Event{Seq: ev.Seq, At: ev.At, Kind: ev.Kind, Step: ev.Step, StepName: ev.StepName, Attempt: ev.Attempt,
			Error: ev.Error, Actor: ev.Actor, Reason: ev.Reason}
	}
	return out
}

// Page is a page of GET api/sagas: Next is the "after" of the next page,
// "" after the last.
type Page struct {
	Sagas []Saga `json:"sagas"`
	Next  string `json:"next"`
}
