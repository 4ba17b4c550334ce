package app

import (
	"fmt"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	rlredis "github.com/portcullis/portcullis/internal/ratelimit/redis"
)

const blocksUsage = `Usage: portcullis blocks <command> [flags]

The dynamic block and throttle lists the abuse detectors and the sign-in throttle fill:
addresses and clients blocked at the gateway or the issuer, and locked accounts. They are
shared through Redis (cache.driver: redis), which is where these commands read and lift
them; every replica sees a lifted block within about a second. With the memory driver the
lists live inside each running process and end on their own.

Commands:
  list   print the blocks in force: list, subject, until, reason
  lift   lift the blocks on an address (--ip), a client (--client) or a subject as listed
`

// blocksListMax bounds what `blocks list` prints per list.
const blocksListMax = 10000

func (e env) blocks(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, blocksUsage)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, blocksUsage)
		return ExitOK
	case "list":
		return e.blocksList(args[1:])
	case "lift":
		return e.blocksLift(args[1:])
	}
	fmt.Fprintf(e.stderr, "portcullis blocks: unknown command %q\n\n%s", args[0], blocksUsage)
	return ExitUsage
}

// blockLists loads the config at path and opens its shared lists; when it cannot, it has
// said why and code is the exit code.
func (e env) blockLists(name, path string) (lists map[string]*rlredis.BlockList, closeLists func(), code int, ok bool) {
	cfg, code, ok := e.loadConfig(path)
	if !ok {
		return nil, nil, code, false
	}
	if cfg.Cache.Driver != "redis" {
		fmt.Fprintf(e.stderr, "portcullis %s: cache.driver is memory: the blocks live inside each running process and end on their own; nothing is shared\n", name)
		return nil, nil, ExitFailure, false
	}
	c, err := newRedisClient(cfg.Cache.URL, cfg.Cache.Timeout)
	if err != nil {
		fmt.Fprintf(e.stderr, "portcullis %s: %v\n", name, err)
		return nil, nil, ExitFailure, false
	}
	o := rlredis.Options{Prefix: cfg.Cache.Prefix, Timeout: cfg.Cache.Timeout}
	lists = make(map[string]*rlredis.BlockList, len(blockListNames))
	for _, n := range blockListNames {
		lists[n] = rlredis.NewBlockList(c, n, o)
	}
	return lists, func() { c.Close() }, ExitOK, true
}

func (e env) blocksList(args []string) int {
	fs := e.flags("blocks list", "[--config FILE]", "Prints the blocks in force in the shared lists (cache.driver: redis).")
	path := fs.String("config", "portcullis.yaml", "config file")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	lists, closeLists, code, ok := e.blockLists("blocks list", *path)
	if !ok {
		return code
	}
	defer closeLists()
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIST\tSUBJECT\tUNTIL\tREASON")
	for _, n := range blockListNames {
		bs, err := lists[n].Entries(e.ctx, now, blocksListMax)
		if err != nil {
			fmt.Fprintf(e.stderr, "portcullis blocks list: %v\n", err)
			return ExitFailure
		}
		for _, b := range bs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n, b.Subject, b.Until.UTC().Format(time.RFC3339), b.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return ExitFailure
	}
	return ExitOK
}

func (e env) blocksLift(args []string) int {
	fs := e.flags("blocks lift", "(--ip ADDRESS | --client ID | --subject SUBJECT) [--config FILE]",
		"Lifts every block and throttle on one subject, in every shared list (cache.driver: redis).\n"+
			"An IPv6 address stands for its /64, as the detectors count it. --subject takes a\n"+
			"subject as 'portcullis blocks list' prints it (for example a locked account).")
	path := fs.String("config", "portcullis.yaml", "config file")
	ip := fs.String("ip", "", "a client address")
	client := fs.String("client", "", "a client id")
	subject := fs.String("subject", "", "a subject as listed")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	var subj string
	n := 0
	for _, v := range []string{*ip, *client, *subject} {
		if v != "" {
			n++
		}
	}
	switch {
	case n != 1:
		fmt.Fprintln(e.stderr, "portcullis blocks lift: give exactly one of --ip, --client and --subject")
		return ExitUsage
	case *ip != "":
		a, err := netip.ParseAddr(*ip)
		if err != nil {
			fmt.Fprintf(e.stderr, "portcullis blocks lift: --ip %q is not an address\n", *ip)
			return ExitUsage
		}
		subj = abuse.IPSubject(a.Unmap())
	case *client != "":
		subj = abuse.ClientSubject(*client)
	default:
		subj = *subject
	}
	if len(subj) > abuse.MaxSubjectLen {
		fmt.Fprintf(e.stderr, "portcullis blocks lift: the subject is longer than %d bytes\n", abuse.MaxSubjectLen)
		return ExitUsage
	}
	lists, closeLists, code, ok := e.blockLists("blocks lift", *path)
	if !ok {
		return code
	}
	defer closeLists()
	now := time.Now()
	var lifted []string
	for _, n := range blockListNames {
		_, blocked, err := lists[n].Blocked(e.ctx, subj, now)
		if err == nil && blocked {
			err = lists[n].Unblock(e.ctx, subj)
			lifted = append(lifted, n)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "portcullis blocks lift: %v\n", err)
			return ExitFailure
		}
	}
	if len(lifted) == 0 {
		fmt.Fprintf(e.stdout, "%s: no block in force\n", subj)
		return ExitOK
	}
	fmt.Fprintf(e.stdout, "%s: lifted from %v\n", subj, lifted)
	return ExitOK
}
