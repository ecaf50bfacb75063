package docrepo

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ParseID parses a client's string as an ObjectID (24 hexadecimal digits).
// Errors: ErrInvalidID, for any other string.
func ParseID(s string) (bson.ObjectID, error) {
	id, err := bson.ObjectIDFromHex(s)
	if err != nil {
		return bson.ObjectID{}, fmt.Errorf("%w: %q: %w", ErrInvalidID, s, err)
	}
	return id, nil
}
