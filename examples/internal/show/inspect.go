package show

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// UntilInterrupted says where the inspector (served on addr) is, and waits
// for Ctrl-C, so the page can be looked at after the workflow finished.
func UntilInterrupted(addr string) {
	host := addr
	if strings.HasPrefix(host, ":") {
		host = "localhost" + host
	}
	fmt.Printf("workflow inspector: http://%s/ (Ctrl-C to stop)\n", host)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
