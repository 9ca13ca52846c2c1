// Command kstatus prints the kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status) of Kubernetes
// objects, the computation Flux (`wait: true`, health checks) and `kubectl`-based tools use
// to decide whether an object is reconciled.
//
// It reads one JSON document from stdin: an object, or a list of them as `kubectl get -o
// json` prints it, and writes one line per object:
//
//	<Kind> <namespace>/<name> <status> <message>
//
// where status is one of InProgress, Failed, Current, Terminating, NotFound, Unknown. The
// nameplane e2e test `status.rs` runs it against live objects on the local control plane.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// The API machinery's JSON decoder: integers as int64, as unstructured objects need.
	var doc map[string]interface{}
	if err := json.Unmarshal(raw, &doc); err != nil {
		fail("stdin is not a JSON object: %v", err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for _, item := range items {
			object, ok := item.(map[string]interface{})
			if !ok {
				fail("a list item is not an object")
			}
			objects = append(objects, object)
		}
	}
	for _, object := range objects {
		u := &unstructured.Unstructured{Object: object}
		result, err := status.Compute(u)
		if err != nil {
			fail("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		fmt.Printf("%s %s/%s %s %s\n", u.GetKind(), u.GetNamespace(), u.GetName(), result.Status, result.Message)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
