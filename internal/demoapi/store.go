package demoapi

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// order is a stored order. It has no JSON tags on purpose: responses are built from the view
// types in view.go, so a field added here is never sent until a view names it.
type order struct {
	ID        string
	Customer  string
	Item      string
	Quantity  int
	UnitCents int64
	Status    string
	CreatedAt time.Time

	// Internal fields: no view has them.
	InternalMarginCents int64
	ShippingAddress     string
}

// totalCents is what the customer pays.
func (o *order) totalCents() int64 { return o.UnitCents * int64(o.Quantity) }

// attributes are what the ownership policy sees of o as `resource`.
func (o *order) attributes() map[string]any {
	return map[string]any{"id": o.ID, "customer": o.Customer, "status": o.Status}
}

// errStoreFull is returned by create when a bound is reached.
var errStoreFull = errors.New("order store is full")

// orderStore holds orders in memory. It is safe for concurrent use; its zero value is not
// usable (see newOrderStore). Seeded orders do not count against the bounds.
type orderStore struct {
	maxCreated     int
	maxPerCustomer int

	mu         sync.RWMutex
	byID       map[string]*order
	byCustomer map[string][]string // ids in creation order
	created    int                 // orders created through the API, in all
	createdBy  map[string]int      // … per customer
	nextSeq    int
}

func newOrderStore(maxCreated, maxPerCustomer int) *orderStore {
	s := &orderStore{
		maxCreated:     maxCreated,
		maxPerCustomer: maxPerCustomer,
		byID:           map[string]*order{},
		byCustomer:     map[string][]string{},
		createdBy:      map[string]int{},
		nextSeq:        5001,
	}
	for _, o := range seedOrders() {
		s.putLocked(o)
	}
	return s
}

// seedTime is when the seeded orders were placed: fixed, so the demo is the same every run.
var seedTime = time.Date(2025, time.March, 3, 9, 0, 0, 0, time.UTC)

// seedOrders are the demo's orders for acme and globex.
func seedOrders() []order {
	at := func(h int) time.Time { return seedTime.Add(time.Duration(h) * time.Hour) }
	return []order{
		{ID: "A-1001", Customer: "acme", Item: "anvil", Quantity: 1, UnitCents: 4999, Status: "shipped", CreatedAt: at(0), InternalMarginCents: 2100, ShippingAddress: "1 Desert Road, Mesa AZ"},
		{ID: "A-1002", Customer: "acme", Item: "rocket skates", Quantity: 2, UnitCents: 12950, Status: "shipped", CreatedAt: at(5), InternalMarginCents: 6400, ShippingAddress: "1 Desert Road, Mesa AZ"},
		{ID: "A-1003", Customer: "acme", Item: "giant magnet", Quantity: 1, UnitCents: 8900, Status: "pending", CreatedAt: at(26), InternalMarginCents: 3900, ShippingAddress: "1 Desert Road, Mesa AZ"},
		{ID: "G-2001", Customer: "globex", Item: "hammock", Quantity: 3, UnitCents: 7500, Status: "shipped", CreatedAt: at(2), InternalMarginCents: 9000, ShippingAddress: "Cypress Creek 42, Springfield"},
		{ID: "G-2002", Customer: "globex", Item: "doomsday device", Quantity: 1, UnitCents: 99999900, Status: "pending", CreatedAt: at(30), InternalMarginCents: 50000000, ShippingAddress: "Volcano Lair, Cypress Creek"},
	}
}

// catalog prices items in cents; an item not listed costs defaultUnitCents.
var catalog = map[string]int64{
	"anvil":           4999,
	"rocket skates":   12950,
	"giant magnet":    8900,
	"hammock":         7500,
	"doomsday device": 99999900,
}

const (
	defaultUnitCents = 1999
	// marginPercent is the internal margin booked for created orders.
	marginPercent = 35
)

// maxIDLength bounds the ids looked up; longer ones cannot exist.
const maxIDLength = 32

func (s *orderStore) putLocked(o order) {
	s.byID[o.ID] = &o
	s.byCustomer[o.Customer] = append(s.byCustomer[o.Customer], o.ID)
}

// get returns a copy of the order with the given id.
func (s *orderStore) get(id string) (order, bool) {
	if len(id) > maxIDLength {
		return order{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.byID[id]
	if !ok {
		return order{}, false
	}
	return *o, true
}

// listByCustomer returns copies of the customer's orders, oldest first.
func (s *orderStore) listByCustomer(customer string) []order {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.byCustomer[customer]
	out := make([]order, 0, len(ids))
	for _, id := range ids {
		out = append(out, *s.byID[id])
	}
	return out
}

// create stores a new pending order for customer and returns it.
func (s *orderStore) create(customer, item string, quantity int, now time.Time) (order, error) {
	unit, ok := catalog[strings.ToLower(item)]
	if !ok {
		unit = defaultUnitCents
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created >= s.maxCreated || s.createdBy[customer] >= s.maxPerCustomer {
		return order{}, errStoreFull
	}
	o := order{
		ID:        fmt.Sprintf("O-%d", s.nextSeq),
		Customer:  customer,
		Item:      item,
		Quantity:  quantity,
		UnitCents: unit,
		Status:    "pending",
		CreatedAt: now.UTC().Truncate(time.Second),
	}
	o.InternalMarginCents = o.totalCents() * marginPercent / 100
	s.nextSeq++
	s.created++
	s.createdBy[customer]++
	s.putLocked(o)
	return o, nil
}

// countByCustomer returns how many orders each customer has.
func (s *orderStore) countByCustomer() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.byCustomer))
	for c, ids := range s.byCustomer {
		out[c] = len(ids)
	}
	return out
}

// customers returns the customer names, sorted.
func customers(counts map[string]int) []string {
	return slices.Sorted(maps.Keys(counts))
}
