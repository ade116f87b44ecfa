package gen

import (
	"fmt"
	"go/token"
	"go/types"

	"github.com/robfig/cron/v3"
)

// CronParser is how schedule= is read, by the generator and the runtime
// alike: five fields (minute hour day-of-month month day-of-week), an
// optional leading seconds field, or a descriptor (@hourly, @every 1m).
var CronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func decodeSchedule(a Arg, dst *string) error {
	if !a.HasValue || a.Value == "" {
		return fmt.Errorf(`want a cron spec, e.g. schedule="*/5 * * * *"`)
	}
	if _, err := CronParser.Parse(a.Value); err != nil {
		return fmt.Errorf("bad cron spec %q: %v", a.Value, err)
	}
	*dst = a.Value
	return nil
}

// checkSchedule reports a schedule on a workflow whose signature is not
// func(ctx context.Context, scheduled, actual time.Time) error.
func (c *collector) checkSchedule(fn *Func) bool {
	if fn.Kind != KindWorkflow || fn.Workflow.Schedule == "" {
		return true
	}
	isTime := func(t types.Type) bool {
		n, ok := t.(*types.Named)
		return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "time" && n.Obj().Name() == "Time"
	}
	if len(fn.Params) == 2 && !fn.Variadic && fn.Result == nil && isTime(fn.Params[0].Type) && isTime(fn.Params[1].Type) {
		return true
	}
	c.ds.errorf(fn.dirPos+token.Pos(fn.Workflow.scheduleOff),
		"schedule= needs func(ctx context.Context, scheduled, actual time.Time) error; %s has another signature", fn.Name)
	return false
}
