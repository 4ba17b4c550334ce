package demoapi

import (
	"fmt"
	"time"

	"github.com/portcullis/portcullis/jwtverify"
)

// Scopes the API understands.
const (
	ScopeOrdersRead  = "orders:read"
	ScopeOrdersWrite = "orders:write"
	ScopeReportsRead = "reports:read"
)

// orderView is what a caller with orders:read sees of one of its orders: the customer-facing
// fields, never the internal ones.
type orderView struct {
	ID        string `json:"id"`
	Customer  string `json:"customer"`
	Item      string `json:"item"`
	Quantity  int    `json:"quantity"`
	Total     string `json:"total"`
	Currency  string `json:"currency"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
}

// orderReceipt is what a caller that may write but not read gets back for the order it
// created: what it sent, the id and the status.
type orderReceipt struct {
	ID       string `json:"id"`
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
	Status   string `json:"status"`
}

// orderList is the body of GET /api/orders.
type orderList struct {
	Orders []orderView `json:"orders"`
}

// readView renders o for a reader.
func readView(o *order) orderView {
	return orderView{
		ID:        o.ID,
		Customer:  o.Customer,
		Item:      o.Item,
		Quantity:  o.Quantity,
		Total:     formatCents(o.totalCents()),
		Currency:  "USD",
		Status:    o.Status,
		CreatedAt: o.CreatedAt.UTC().Format(time.RFC3339),
	}
}

// viewFor renders o with the fields claims' scopes allow (see the package doc).
func viewFor(o *order, c *jwtverify.Claims) any {
	if c.HasScope(ScopeOrdersRead) {
		return readView(o)
	}
	return orderReceipt{ID: o.ID, Item: o.Item, Quantity: o.Quantity, Status: o.Status}
}

// formatCents renders a non-negative amount of cents as a decimal string ("12.50"): money is
// never a float.
func formatCents(c int64) string {
	return fmt.Sprintf("%d.%02d", c/100, c%100)
}
