package config

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/repofs"
)

// Paths a config reads (its *.hcl files, file() arguments, fixtures
// folders) are read through Config.FS and stay inside the repository: see
// LoadFS. The paths of files backflow writes (a sqlite destination's path,
// a file destination's path, the state folder) are the one exception: they
// resolve from Config.Dir on disk, wherever they point, and are never read
// as config (file() cannot name a path outside the repository, and a
// destination path is never read by the loader).

var (
	errConfigFileTooLarge = fmt.Errorf("larger than %d MiB, the limit for a config file", MaxConfigFileSize>>20)
	errConfigTooLarge     = fmt.Errorf("the config (its *.hcl files and every value its functions returned) exceeds %d MiB", MaxConfigSize>>20)
)

// configFilesAllowed ends the detail of a diagnostic about a config file.
const configFilesAllowed = "Config files must be regular files inside the repository, of at most 1 MiB each."

// readConfigFile reads a *.hcl file: a regular file of at most
// MaxConfigFileSize bytes.
func readConfigFile(fsys fs.FS, name string) ([]byte, error) {
	src, err := repofs.ReadFile(fsys, name)
	if err == nil && len(src) > MaxConfigFileSize {
		return nil, fmt.Errorf("%w: the file has %d bytes", errConfigFileTooLarge, len(src))
	}
	return src, err
}

// grow adds n bytes to the config read so far, failing past MaxConfigSize.
func (l *loader) grow(n int) error {
	l.size += int64(n)
	if l.size > MaxConfigSize {
		return errConfigTooLarge
	}
	return nil
}

// pathProblem returns a diagnostic summary for a path the config could
// not read, and err's reason without the path (which the caller names).
func pathProblem(err error) (summary, reason string) {
	reason = unwrapPathError(err).Error()
	switch {
	case errors.Is(err, repofs.ErrAbsolute):
		summary = "Absolute path"
	case errors.Is(err, repofs.ErrOutside), errors.Is(err, repofs.ErrSymlinkOutside):
		summary = "Path outside the repository"
	case errors.Is(err, repofs.ErrGitDir):
		summary = "Path inside .git"
	case errors.Is(err, repofs.ErrNotRegular):
		summary = "Not a regular file"
	case errors.Is(err, repofs.ErrTooLarge), errors.Is(err, errConfigFileTooLarge):
		summary = "File too large"
	case errors.Is(err, errConfigTooLarge):
		summary = "Config too large"
	case errors.Is(err, repofs.ErrTooManyLinks):
		summary = "Too many symlinks"
	default:
		summary = "Cannot read file"
	}
	return summary, reason
}

// pathsAllowed says what a path read by the config may be, for the detail
// of diagnostics about one.
const pathsAllowed = "Paths are relative to the config folder and must stay inside the repository that holds it (or the config folder, outside git): no absolute paths, no \"..\" above the repository, no symlinks leading out of it, nothing under .git, only regular files of at most 8 MiB."

// folder checks a folder the config names (fixtures) relative to the
// config folder: an absolute path or one leading outside the repository is
// a diagnostic at expr, and "" is returned so that nothing reads it. A
// folder that is missing is left for its reader to report.
func (l *loader) folder(expr hcl.Range, arg, rel string) string {
	p, err := repofs.Join(l.fsDir, rel)
	if err == nil {
		_, err = fs.Stat(l.fsys, p)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		summary, reason := pathProblem(err)
		l.errorf(expr, summary, "The %s folder %q cannot be read: %s. %s", arg, rel, reason, pathsAllowed)
		return ""
	}
	return rel
}

// Path returns the path in c.FS of rel, a path written in the config
// relative to the config folder (a fixtures folder). It refuses absolute
// paths and paths leading above the root of c.FS; c.FS itself refuses the
// rest (symlinks out, .git, special files, size).
func (c *Config) Path(rel string) (string, error) {
	return repofs.Join(c.FSDir, rel)
}
