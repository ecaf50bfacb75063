package docrepo

import "time"

// Options configures a Repository. The zero value means the defaults.
type Options struct {
	// Clock returns the time written to the created and updated fields.
	// Default: time.Now. The time is stored in UTC, truncated to the
	// millisecond that BSON keeps, so a value read back equals the one set.
	Clock func() time.Time
	// DefaultPageSize is the page size of Page and OffsetPage when the
	// request gives none. Default: 50.
	DefaultPageSize int
	// MaxPageSize caps the page size that a request may ask for, so that
	// client input cannot ask for the whole collection. Default: 1000.
	MaxPageSize int
}

func (o Options) now() time.Time {
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	return clock().UTC().Truncate(time.Millisecond)
}

func (o Options) pageSize(asked int) (int, error) {
	def, limit := o.DefaultPageSize, o.MaxPageSize
	if def <= 0 {
		def = 50
	}
	if limit <= 0 {
		limit = 1000
	}
	switch {
	case asked < 0:
		return 0, invalidf("negative page size %d", asked)
	case asked == 0:
		return min(def, limit), nil
	case asked > limit:
		return 0, invalidf("page size %d is above the maximum %d", asked, limit)
	}
	return asked, nil
}
