// One call through OVH's own Go client (github.com/ovh/go-ovh, Debian's golang-github-ovh-go-ovh-dev),
// unchanged: the lab's CA is trusted through SSL_CERT_FILE, as a customer's Go program would.
// stdin: {"endpoint", "appKey", "appSecret", "consumerKey", "op": "call"|"credential", "method",
// "path", "body", "rules": [{"method", "path"}], "redirection"}
// stdout: {"result": ...} or {"error": <HTTP status>, "message": "..."} as the client reports it.
package main

import (
	"encoding/json"
	"errors"
	"os"

	"github.com/ovh/go-ovh/ovh"
)

type input struct {
	Endpoint    string           `json:"endpoint"`
	AppKey      string           `json:"appKey"`
	AppSecret   string           `json:"appSecret"`
	ConsumerKey string           `json:"consumerKey"`
	Op          string           `json:"op"`
	Method      string           `json:"method"`
	Path        string           `json:"path"`
	Body        interface{}      `json:"body"`
	Rules       []ovh.AccessRule `json:"rules"`
	Redirection string           `json:"redirection"`
}

func answer(value interface{}) {
	_ = json.NewEncoder(os.Stdout).Encode(value)
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	client, err := ovh.NewClient(in.Endpoint, in.AppKey, in.AppSecret, in.ConsumerKey)
	if err != nil {
		panic(err)
	}
	var result interface{}
	if in.Op == "credential" {
		request := client.NewCkRequestWithRedirection(in.Redirection)
		for _, rule := range in.Rules {
			request.AddRule(rule.Method, rule.Path)
		}
		var state *ovh.CkValidationState
		state, err = request.Do()
		result = state
	} else {
		err = client.CallAPI(in.Method, in.Path, in.Body, &result, true)
	}
	var apiError *ovh.APIError
	if errors.As(err, &apiError) {
		answer(map[string]interface{}{"error": apiError.Code, "message": apiError.Message})
		return
	}
	if err != nil {
		answer(map[string]interface{}{"error": err.Error()})
		return
	}
	answer(map[string]interface{}{"result": result})
}
