package docrepo

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The servers' own texts: MongoDB's from its update-node unit tests (FerretDB
// 1.24's are exercised against the real server in nilslice_test.go), so that
// the mapping is checked for a server that the local tests cannot reach.
func TestTranslate_TypeMismatchMessagesOfMongoDBAndFerretDB(t *testing.T) {
	tests := []struct {
		server      string
		code        int
		msg         string
		want        string // the part of the message that names the field and its type
		notMismatch bool
	}{
		{"MongoDB $push", 2, "The field 'tags' must be an array but is of type null in document {_id: ObjectId('65f0a0a0a0a0a0a0a0a0a0a0')}", `field "tags" holds null, not an array`, false},
		{"MongoDB $addToSet", 2, "Cannot apply $addToSet to non-array field. Field named 'tags' has non-array type null", `field "tags" holds null, not an array`, false},
		{"MongoDB $pull", 2, "Cannot apply $pull to a non-array value", `field "tags" holds a value of another type, not an array`, false},
		{"MongoDB $inc", 14, "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'views' of non-numeric type string", `field "views" holds string, not a number`, false},
		{"FerretDB $push and $addToSet", 2, "The field 'tags' must be an array but is of type 'null' in document {_id: 1}", `field "tags" holds null, not an array`, false},
		{"another BadValue", 2, "$slice must be a numeric value", "", true},
		{"another server error", 11000, "E11000 duplicate key error", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.server, func(t *testing.T) {
			driver := mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: tt.code, Message: tt.msg}}}
			u := NewUpdate().Pull("tags", "a")

			err := updateError("update 1", u, fmt.Errorf("wrapped: %w", driver), "")

			if tt.notMismatch {
				assert.NotErrorIs(t, err, ErrTypeMismatch)
				return
			}
			assert.ErrorIs(t, err, ErrTypeMismatch)
			assert.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tt.want)
			var we mongo.WriteException
			assert.True(t, errors.As(err, &we))
		})
	}
}
