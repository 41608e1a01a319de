// Package repofs reads the files of a repository, from its working tree
// (Dir) or from a git revision without a checkout (Tree), as an io/fs.FS
// that cannot be led outside the repository. The config loader and the
// fixture loader read every input through it, because a config under review
// is untrusted: whoever writes it must not be able to read the host's files
// (credentials, /proc) or exhaust the memory of the machine that plans it.
//
// Both file systems resolve every path inside their root: names are
// io/fs paths (no leading "/", no ".."), symlinks are followed only while
// they stay inside the root, nothing under a .git folder is readable, only
// regular files and folders can be opened (no FIFOs, devices or sockets,
// no submodules), and a file holds at most MaxFileSize bytes, a limit that
// also bounds every read. Each refusal is an *fs.PathError wrapping one of
// the Err* values, so callers can say what is allowed.
//
// Locate finds the repository holding a folder; OpenRevision opens the tree
// of a commit, branch or tag. The package writes nothing.
package repofs
