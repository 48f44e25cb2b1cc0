package observe

// Tee returns a function that calls each of fns, in order, with every event
// it receives: one event stream fanned out to several consumers (a log,
// metrics, a progress bar). Nil functions are skipped. The returned function
// calls the consumers on its caller's goroutine, so it is as safe for
// concurrent use as the least safe of them; every consumer in this package
// is safe for concurrent use.
func Tee[E any](fns ...func(E)) func(E) {
	var live []func(E)
	for _, f := range fns {
		if f != nil {
			live = append(live, f)
		}
	}
	switch len(live) {
	case 0:
		return func(E) {}
	case 1:
		return live[0]
	}
	return func(e E) {
		for _, f := range live {
			f(e)
		}
	}
}
