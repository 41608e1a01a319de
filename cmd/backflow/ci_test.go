package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
	"go.yaml.in/yaml/v3"
)

// The CI recipes of examples/ci are run here as CI would run them: every
// run script of the plan and apply jobs, in order, in a fresh shallow
// clone of a repository built by the test, with the CI's variables set.
// What the test cannot run is left out and emulated: actions (checkout is
// the clone), installing backflow (the test binary's backflow is on PATH),
// and the forge's API, which stand-ins for gh and curl keep in a JSON
// file, so that the comment-updating logic runs for real (with jq).
//
// The state is in the postgres backend, as in the recipes: a schema of the
// local server shared by every clone.

// needTools skips the test when a tool is missing, except under CI.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed (CI is set): %v", tool, err)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

// ciRepo is a repository "upstream" with a config folder crm whose state
// and destination live outside any clone, as a database would.
type ciRepo struct {
	t        *testing.T
	root     string // holds upstream, clones, state, destination
	upstream string
	stubs    string // folder of the gh and curl stand-ins, first on PATH
	comments string // the forge's comments, a JSON array
	clones   int
}

func newCIRepo(t *testing.T) *ciRepo {
	needTools(t, "git", "bash", "jq")
	root := t.TempDir()
	r := &ciRepo{t: t, root: root, upstream: filepath.Join(root, "upstream"), stubs: filepath.Join(root, "bin"), comments: filepath.Join(root, "comments.json")}
	for name, script := range map[string]string{"gh": ghStub, "curl": curlStub} {
		if err := os.MkdirAll(r.stubs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.stubs, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(r.comments, []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := prConfig()
	schema := testdb.Name("bfci")
	conn := testdb.Postgres(t)
	t.Setenv("BACKFLOW_STATE_DSN", testdb.PostgresDSN) // as the runner's secret
	t.Cleanup(func() { conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })
	files["crm/main.hcl"] += fmt.Sprintf(`
state {
  backend = "postgres"
  dsn     = env("BACKFLOW_STATE_DSN")
  schema  = %q
}
`, schema)
	files["crm/main.hcl"] = strings.Replace(files["crm/main.hcl"], `path     = "crm.db"`, fmt.Sprintf(`path     = %q`, filepath.Join(root, "crm.db")), 1)
	files[".gitignore"] = ""
	r.git(root, "init", "-q", "-b", "main", r.upstream)
	r.commit("initial config", files)
	return r
}

func (r *ciRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+r.root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files in upstream's working tree and commits them on the
// branch checked out there.
func (r *ciRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.upstream, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git(r.upstream, "add", "-A")
	r.git(r.upstream, "commit", "-q", "-m", msg)
	return r.git(r.upstream, "rev-parse", "HEAD")
}

func (r *ciRepo) edit(name string, f func(string) string) map[string]string {
	b, err := os.ReadFile(filepath.Join(r.upstream, filepath.FromSlash(name)))
	if err != nil {
		r.t.Fatal(err)
	}
	return map[string]string{name: f(string(b))}
}

// clone is a CI checkout: one commit of branch, shallow.
func (r *ciRepo) clone(branch string) string {
	r.t.Helper()
	r.clones++
	dir := filepath.Join(r.root, fmt.Sprintf("clone%d", r.clones))
	r.git(r.root, "clone", "-q", "--depth=1", "--single-branch", "--branch", branch, "file://"+r.upstream, dir)
	return dir
}

func (r *ciRepo) env(vars map[string]string) []string {
	env := []string{"PATH=" + r.stubs + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + r.root, "COMMENTS=" + r.comments,
		"GIT_CONFIG_NOSYSTEM=1", "LANG=C.UTF-8"}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// script runs a CI script with bash -eo pipefail, as both forges do.
func (r *ciRepo) script(dir string, env []string, script string) (string, error) {
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *ciRepo) commentsNow() []struct {
	ID   int    `json:"id"`
	Body string `json:"body"`
} {
	var cs []struct {
		ID   int    `json:"id"`
		Body string `json:"body"`
	}
	b, err := os.ReadFile(r.comments)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		r.t.Fatalf("comments: %v\n%s", err, b)
	}
	return cs
}

func (r *ciRepo) forgeLog() string {
	b, _ := os.ReadFile(r.comments + ".log")
	return string(b)
}

// A GitHub Actions workflow, as far as the test runs it.
type ghWorkflow struct {
	Env  map[string]string `yaml:"env"`
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			ID   string            `yaml:"id"`
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			If   string            `yaml:"if"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

var ghExpr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// runGitHubJob runs the run steps of a job in dir; ctx gives the values of
// the ${{ }} expressions the workflow uses (an unknown one fails the
// test, so the test knows every input the recipe reads). It returns the
// output of every step and the first step that failed ("" if none).
func (r *ciRepo) runGitHubJob(wf *ghWorkflow, job, dir string, ctx map[string]string) (string, string) {
	r.t.Helper()
	j, ok := wf.Jobs[job]
	if !ok {
		r.t.Fatalf("the workflow has no job %q", job)
	}
	outputs := map[string]string{}
	resolve := func(v string) string {
		return ghExpr.ReplaceAllStringFunc(v, func(m string) string {
			expr := ghExpr.FindStringSubmatch(m)[1]
			if val, ok := ctx[expr]; ok {
				return val
			}
			if val, ok := outputs[expr]; ok {
				return val
			}
			r.t.Fatalf("the workflow reads ${{ %s }}, which the test does not provide", expr)
			return ""
		})
	}
	outFile := filepath.Join(r.root, "github_output")
	var log strings.Builder
	for _, step := range j.Steps {
		if step.Uses != "" || step.Name == "Install backflow" {
			continue
		}
		if step.If != "" {
			r.t.Fatalf("step %q has a condition the test does not evaluate: %s", step.Name, step.If)
		}
		vars := map[string]string{"GITHUB_OUTPUT": outFile, "GITHUB_WORKSPACE": dir, "CI": "true", "GITHUB_ACTIONS": "true"}
		for _, m := range []map[string]string{wf.Env, j.Env, step.Env} {
			for k, v := range m {
				vars[k] = resolve(v)
			}
		}
		os.WriteFile(outFile, nil, 0o644)
		out, err := r.script(dir, r.env(vars), step.Run)
		fmt.Fprintf(&log, "## %s\n%s", step.Name, out)
		if err != nil {
			return log.String(), step.Name
		}
		if step.ID != "" {
			f, _ := os.Open(outFile)
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					outputs["steps."+step.ID+".outputs."+k] = v
				}
			}
			f.Close()
		}
	}
	return log.String(), ""
}

// A GitLab CI file, as far as the test runs it: variables and scripts
// (before_script installs tools, which the test has).
type glJob struct {
	Variables map[string]string `yaml:"variables"`
	Script    []string          `yaml:"script"`
}

func (r *ciRepo) runGitLabJob(file map[string]yaml.Node, job, dir string, ci map[string]string) (string, bool) {
	r.t.Helper()
	var global map[string]string
	if n, ok := file["variables"]; ok {
		if err := n.Decode(&global); err != nil {
			r.t.Fatal(err)
		}
	}
	n, ok := file[job]
	if !ok {
		r.t.Fatalf("the pipeline has no job %q", job)
	}
	var j glJob
	if err := n.Decode(&j); err != nil {
		r.t.Fatal(err)
	}
	vars := map[string]string{"CI": "true", "GITLAB_CI": "true"}
	for _, m := range []map[string]string{global, j.Variables, ci} {
		for k, v := range m {
			vars[k] = v
		}
	}
	out, err := r.script(dir, r.env(vars), strings.Join(j.Script, "\n"))
	return out, err == nil
}

func readRecipe(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../examples/ci", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// countRowsWhere counts the destination's contacts matching where.
func countRowsWhere(t *testing.T, db, where string) int {
	t.Helper()
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRow("SELECT count(*) FROM contacts WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The pull request of both recipes' tests: a rule excluding the free
// tier. Meanwhile main changes a mapping (and applies it), which the PR's
// plan must not show as the PR's.
func prRule(hcl string) string {
	return strings.Replace(hcl, `  exclude "missing_email" {`, `  exclude "free_tier" {
    when = "row.tier == 'free'"
  }

  exclude "missing_email" {`, 1)
}

func mainMapping(hcl string) string {
	return strings.Replace(hcl, `full_name = "name"`, `full_name = "tier"`, 1)
}

// checkPRComment asserts that the comment shows the PR's change only.
func checkPRComment(t *testing.T, body, planLine string) {
	t.Helper()
	for _, want := range []string{
		planLine,
		"<!-- backflow-plan: crm -->\n",
		"**1 config block differs**",
		"+  exclude \"free_tier\" {",
		"rule `free_tier` (added) newly excludes 20 rows, all synced: `delete_behavior = delete` deletes them",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the comment lacks %q:\n%s", want, body)
		}
	}
	// main's own change (applied already) is not the PR's.
	for _, not := range []string{`full_name = "tier"`, "mapping of"} {
		if strings.Contains(body, not) {
			t.Errorf("the comment shows %q, a change of main, not of the PR:\n%s", not, body)
		}
	}
}

func TestGitHubActionsRecipe(t *testing.T) {
	r := newCIRepo(t)
	var wf ghWorkflow
	readRecipe(t, "github-actions.yml", &wf)
	ctx := map[string]string{
		"secrets.BACKFLOW_STATE_DSN":          testdb.PostgresDSN,
		"github.base_ref":                     "main",
		"github.event.pull_request.number":    "7",
		"github.repository":                   "acme/crm",
		"github.token":                        "token",
		"github.event_name == 'pull_request'": "true",
	}
	db := filepath.Join(r.root, "crm.db")

	// The first merge to main applies the config.
	if log, failed := r.runGitHubJob(&wf, "apply", r.clone("main"), ctx); failed != "" {
		t.Fatalf("apply job failed at %q:\n%s", failed, log)
	}
	if n := countRowsWhere(t, db, "1 = 1"); n != 90 {
		t.Fatalf("after the first apply the destination has %d rows, want 90", n)
	}

	// A pull request branches off; main moves on and is applied.
	r.git(r.upstream, "checkout", "-q", "-b", "feature")
	r.commit("exclude the free tier", r.edit("crm/main.hcl", prRule))
	r.git(r.upstream, "checkout", "-q", "main")
	r.commit("send the tier as full name", r.edit("crm/main.hcl", mainMapping))
	if log, failed := r.runGitHubJob(&wf, "apply", r.clone("main"), ctx); failed != "" {
		t.Fatalf("apply job of main failed at %q:\n%s", failed, log)
	}
	// GitHub checks out the PR's merge with the base's head.
	r.git(r.upstream, "checkout", "-q", "-b", "pull/7/merge", "main")
	r.git(r.upstream, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
	r.git(r.upstream, "checkout", "-q", "main")

	// The shallow checkout has no base: --base says how to fetch it.
	pr := r.clone("pull/7/merge")
	out, err := r.script(pr, r.env(map[string]string{"BACKFLOW_DIR": "crm", "BACKFLOW_STATE_DSN": testdb.PostgresDSN}), `backflow -C crm plan --base origin/main`)
	if err == nil || !strings.Contains(out, "git fetch --no-tags --depth=1 origin +refs/heads/main:refs/remotes/origin/main") {
		t.Errorf("plan --base in a shallow clone without the base: %v\n%s", err, out)
	}

	log, failed := r.runGitHubJob(&wf, "plan", pr, ctx)
	if failed != "" {
		t.Fatalf("plan job failed at %q:\n%s", failed, log)
	}
	cs := r.commentsNow()
	if len(cs) != 1 {
		t.Fatalf("%d comments after the plan job, want 1:\n%s", len(cs), log)
	}
	checkPRComment(t, cs[0].Body, "### Plan: 0 to add, 0 to change, 20 to remove, 0 to retry")
	if !strings.Contains(cs[0].Body, "| `users` | nothing to do | 20 to remove | 20 |") {
		t.Errorf("the plan at the base is not empty:\n%s", cs[0].Body)
	}

	// The job runs again (a new push to the PR): the comment is updated.
	if log, failed := r.runGitHubJob(&wf, "plan", r.clone("pull/7/merge"), ctx); failed != "" {
		t.Fatalf("second plan job failed at %q:\n%s", failed, log)
	}
	if cs := r.commentsNow(); len(cs) != 1 || !strings.Contains(r.forgeLog(), "PATCH repos/acme/crm/issues/comments/1") {
		t.Errorf("%d comments after a second plan job, want the first updated; forge log:\n%s", len(cs), r.forgeLog())
	}

	// The merge applies exactly that.
	r.git(r.upstream, "merge", "-q", "--ff-only", "pull/7/merge")
	main := r.clone("main")
	if log, failed := r.runGitHubJob(&wf, "apply", main, ctx); failed != "" {
		t.Fatalf("apply of the merge failed at %q:\n%s", failed, log)
	}
	if n := countRowsWhere(t, db, "id % 4 = 0"); n != 0 {
		t.Errorf("%d free users still in the destination after the merge", n)
	}
	if n := countRowsWhere(t, db, "1 = 1"); n != 70 {
		t.Errorf("the destination has %d rows after the merge, want 70", n)
	}
	if code, out, errOut := backflow("-C", filepath.Join(main, "crm"), "plan", "--detailed-exitcode"); code != 0 {
		t.Errorf("plan after the merge's apply: exit %d\n%s%s", code, out, errOut)
	}
}

func TestGitLabCIRecipe(t *testing.T) {
	r := newCIRepo(t)
	var pipeline map[string]yaml.Node
	readRecipe(t, "gitlab-ci.yml", &pipeline)
	db := filepath.Join(r.root, "crm.db")
	ci := map[string]string{"CI_DEFAULT_BRANCH": "main", "CI_COMMIT_BRANCH": "main", "BACKFLOW_STATE_DSN": testdb.PostgresDSN}

	main := r.clone("main")
	for _, job := range []string{"validate", "apply"} {
		if out, ok := r.runGitLabJob(pipeline, job, main, ci); !ok {
			t.Fatalf("%s job failed:\n%s", job, out)
		}
	}
	base := r.git(r.upstream, "rev-parse", "HEAD")
	r.git(r.upstream, "checkout", "-q", "-b", "feature")
	r.commit("exclude the free tier", r.edit("crm/main.hcl", prRule))
	r.git(r.upstream, "checkout", "-q", "main")
	r.commit("send the tier as full name", r.edit("crm/main.hcl", mainMapping))
	if out, ok := r.runGitLabJob(pipeline, "apply", r.clone("main"), ci); !ok {
		t.Fatalf("apply job of main failed:\n%s", out)
	}
	// Allow fetching a commit by hash, as GitLab does.
	r.git(r.upstream, "config", "uploadpack.allowAnySHA1InWant", "true")

	// A merge request pipeline checks out the branch's head; its base is
	// the merge base (not a merged-results pipeline).
	mr := map[string]string{
		"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_DIFF_BASE_SHA": base, "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": "",
		"CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": "42", "CI_API_V4_URL": "https://gitlab.example/api/v4",
		"BACKFLOW_GITLAB_TOKEN": "token", "BACKFLOW_STATE_DSN": testdb.PostgresDSN, "CI_DEFAULT_BRANCH": "main",
	}
	for round := 1; round <= 2; round++ {
		dir := r.clone("feature")
		for _, job := range []string{"validate", "plan"} {
			if out, ok := r.runGitLabJob(pipeline, job, dir, mr); !ok {
				t.Fatalf("round %d: %s job failed:\n%s\nforge log:\n%s", round, job, out, r.forgeLog())
			}
		}
	}
	cs := r.commentsNow()
	if len(cs) != 1 || !strings.Contains(r.forgeLog(), "PUT https://gitlab.example/api/v4/projects/42/merge_requests/3/notes/1") {
		t.Fatalf("%d notes after two pipelines, want one, updated; forge log:\n%s", len(cs), r.forgeLog())
	}
	// The branch lacks main's newer mapping change, so its plan (of the
	// branch as it is) reverts it, but what the branch changes is only
	// the rule: both plans at its base and its head revert it alike.
	checkPRComment(t, cs[0].Body, "### Plan: 0 to add, 70 to change, 20 to remove, 0 to retry")
	if !strings.Contains(cs[0].Body, "| `users` | 90 to change | 70 to change, 20 to remove | 20 |") {
		t.Errorf("the plans at base and head:\n%s", cs[0].Body)
	}
	if n := countRowsWhere(t, db, "id % 4 = 0"); n != 20 {
		t.Errorf("the plan changed the destination: %d free users, want 20", n)
	}
}

// ghStub stands in for `gh api`: the comments of one pull request live in
// $COMMENTS, a JSON array; every call is logged to $COMMENTS.log.
const ghStub = `#!/bin/sh
set -e
echo "$*" | sed 's/^api //' >> "$COMMENTS.log"
method=GET; expr=.; body=; path=
while [ $# -gt 0 ]; do
  case "$1" in
    api|--paginate) ;;
    --method) method=$2; shift ;;
    --jq) expr=$2; shift ;;
    -F) body=${2#body=@}; shift ;;
    *) path=$1 ;;
  esac
  shift
done
case "$method $path" in
  "GET repos/$GH_REPO/issues/$PR_NUMBER/comments") jq -r "$expr" "$COMMENTS" ;;
  "POST repos/$GH_REPO/issues/$PR_NUMBER/comments")
    jq --rawfile b "$body" '. + [{id: (length + 1), body: $b}]' "$COMMENTS" > "$COMMENTS.tmp" && mv "$COMMENTS.tmp" "$COMMENTS" ;;
  "PATCH repos/$GH_REPO/issues/comments/"*)
    jq --argjson id "${path##*/}" --rawfile b "$body" 'map(if .id == $id then .body = $b else . end)' "$COMMENTS" > "$COMMENTS.tmp" && mv "$COMMENTS.tmp" "$COMMENTS" ;;
  *) echo "gh stand-in: unexpected call: $method $path" >&2; exit 1 ;;
esac
`

// curlStub stands in for curl against GitLab's notes API, keeping the
// notes of one merge request in $COMMENTS.
const curlStub = `#!/bin/sh
set -e
method=GET; body=; url=
while [ $# -gt 0 ]; do
  case "$1" in
    --fail|-sS) ;;
    --header) shift ;;
    --request) method=$2; shift ;;
    --data-urlencode) body=${2#body@}; shift ;;
    *) url=$1 ;;
  esac
  shift
done
echo "$method $url" >> "$COMMENTS.log"
notes="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"
case "$method $url" in
  "GET $notes?"*) cat "$COMMENTS" ;;
  "POST $notes")
    jq --rawfile b "$body" '. + [{id: (length + 1), body: $b}]' "$COMMENTS" > "$COMMENTS.tmp" && mv "$COMMENTS.tmp" "$COMMENTS" ;;
  "PUT $notes/"*)
    jq --argjson id "${url##*/}" --rawfile b "$body" 'map(if .id == $id then .body = $b else . end)' "$COMMENTS" > "$COMMENTS.tmp" && mv "$COMMENTS.tmp" "$COMMENTS" ;;
  *) echo "curl stand-in: unexpected call: $method $url" >&2; exit 22 ;;
esac
`
