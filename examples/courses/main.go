// Command courses shows consistency across aggregates on the embedded bolt
// store: course subscriptions where a course holds at most its capacity of
// students and a student takes at most 3 courses. Neither rule belongs to
// one aggregate, so no aggregate version can keep it; each subscription is
// decided on the events tagged with its course or its student (a query),
// and appended on the condition that none of them arrived since
// (Store.AppendIf, through aggregate.Decide). Concurrent students race for
// the last seats, and the rules hold.
//
// It works in a temporary directory that it removes, prints what it does,
// and exits non-zero on any failure.
//
//	go run ./examples/courses
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/bolt"
)

// The rules.
const studentLimit = 3

// Errors a decision returns: the command is refused.
var (
	errCourseFull      = errors.New("course is full")
	errTooManyCourses  = errors.New("student takes too many courses")
	errAlreadyInCourse = errors.New("student already takes the course")
	errNoCourse        = errors.New("no such course")
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "courses:", err)
		os.Exit(1)
	}
}

func courseTag(id string) string  { return "course:" + id }
func studentTag(id string) string { return "student:" + id }

// defineCourse records a course with its capacity, once.
func defineCourse(ctx context.Context, s eventstore.Store, id string, capacity int) error {
	_, err := aggregate.Decide(ctx, s, aggregate.Decision[bool]{
		Query:  eventstore.Filter{Types: []string{"CourseDefined"}, Tags: []string{courseTag(id)}},
		Evolve: func(bool, eventstore.Event) (bool, error) { return true, nil },
		Decide: func(exists bool) ([]eventstore.Event, error) {
			if exists {
				return nil, fmt.Errorf("course %s exists", id)
			}
			e, err := eventstore.NewEvent("course-"+id, "CourseDefined", map[string]int{"capacity": capacity})
			e.Tags = []string{courseTag(id)}
			return []eventstore.Event{e}, err
		},
	}, nil)
	return err
}

// subscription is the state of one decision: what the events of one
// course and one student say.
type subscription struct {
	defined   bool
	capacity  int
	students  int  // in the course
	courses   int  // of the student
	subscribe bool // the student already takes the course
}

// subscribe subscribes student to course if the rules allow it.
func subscribe(ctx context.Context, s eventstore.Store, student, course string) error {
	ct, st := courseTag(course), studentTag(student)
	_, err := aggregate.Decide(ctx, s, aggregate.Decision[subscription]{
		Query: eventstore.Filter{Items: []eventstore.Item{
			{Types: []string{"CourseDefined", "StudentSubscribed"}, Tags: []string{ct}},
			{Types: []string{"StudentSubscribed"}, Tags: []string{st}},
		}},
		Evolve: func(sub subscription, e eventstore.Event) (subscription, error) {
			switch e.Type {
			case "CourseDefined":
				var c struct{ Capacity int }
				if err := e.Unmarshal(&c); err != nil {
					return sub, err
				}
				sub.defined, sub.capacity = true, c.Capacity
			case "StudentSubscribed":
				inCourse, ofStudent := has(e.Tags, ct), has(e.Tags, st)
				if inCourse {
					sub.students++
				}
				if ofStudent {
					sub.courses++
				}
				sub.subscribe = sub.subscribe || inCourse && ofStudent
			}
			return sub, nil
		},
		Decide: func(sub subscription) ([]eventstore.Event, error) {
			switch {
			case !sub.defined:
				return nil, errNoCourse
			case sub.subscribe:
				return nil, errAlreadyInCourse
			case sub.students >= sub.capacity:
				return nil, errCourseFull
			case sub.courses >= studentLimit:
				return nil, errTooManyCourses
			}
			e, err := eventstore.NewEvent("student-"+student, "StudentSubscribed", map[string]string{"course": course})
			e.Tags = []string{ct, st}
			return []eventstore.Event{e}, err
		},
	}, nil)
	return err
}

func has(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "courses-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := bolt.Open(filepath.Join(dir, "events.db"), nil)
	if err != nil {
		return err
	}
	defer s.Close()

	capacity := map[string]int{"math": 4, "art": 6, "chess": 10}
	for _, c := range []string{"math", "art", "chess"} {
		if err := defineCourse(ctx, s, c, capacity[c]); err != nil {
			return err
		}
		fmt.Printf("course %s: capacity %d\n", c, capacity[c])
	}
	if err := defineCourse(ctx, s, "math", 99); err == nil {
		return errors.New("a course was defined twice")
	}

	// One student, one refusal of each kind.
	for _, c := range []string{"math", "art", "chess"} {
		if err := subscribe(ctx, s, "ann", c); err != nil {
			return err
		}
	}
	for c, want := range map[string]error{"math": errAlreadyInCourse, "physics": errNoCourse} {
		if err := subscribe(ctx, s, "ann", c); !errors.Is(err, want) {
			return fmt.Errorf("ann to %s: got %v, want %v", c, err, want)
		}
	}
	if err := defineCourse(ctx, s, "music", 5); err != nil {
		return err
	}
	if err := subscribe(ctx, s, "ann", "music"); !errors.Is(err, errTooManyCourses) {
		return fmt.Errorf("ann to a fourth course: got %v", err)
	}
	fmt.Println("ann takes math, art and chess; a fourth course is refused")

	// 24 students race for every course at once: 3 of each 4 are refused
	// somewhere, but no course overflows and no student exceeds the limit.
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := map[error]int{}
	var failed error
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range []string{"math", "art", "chess", "music"} {
				err := subscribe(ctx, s, fmt.Sprint("s", i), c)
				mu.Lock()
				switch {
				case err == nil:
				case errors.Is(err, errCourseFull), errors.Is(err, errTooManyCourses):
					refused[err]++
				default:
					failed = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return failed
	}

	// Check the rules on the log.
	perCourse, perStudent := map[string]int{}, map[string]int{}
	events, err := eventstore.Collect(s.Read(ctx, eventstore.Filter{Types: []string{"StudentSubscribed"}}, 0))
	if err != nil {
		return err
	}
	for _, e := range events {
		perCourse[e.Tags[0]]++
		perStudent[e.Tags[1]]++
	}
	capacity["music"] = 5
	for c, n := range capacity {
		got := perCourse[courseTag(c)]
		fmt.Printf("course %s: %d of %d seats taken\n", c, got, n)
		if got > n {
			return fmt.Errorf("course %s holds %d students, capacity %d", c, got, n)
		}
		if got < n {
			return fmt.Errorf("course %s has free seats although students asked: %d of %d", c, got, n)
		}
	}
	for st, n := range perStudent {
		if n > studentLimit {
			return fmt.Errorf("%s takes %d courses", st, n)
		}
	}
	fmt.Printf("%d subscriptions, %d refused as full, %d as too many courses; every rule holds\n",
		len(events), refused[errCourseFull], refused[errTooManyCourses])
	return s.Check(ctx)
}
