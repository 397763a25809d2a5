// The guard of the sandbox's PID namespace and the server's fork; see
// guard_linux.go.
#include <stddef.h>
#include <sys/types.h>

// Where the guard or the server failed (the first of the two int32s on
// the error pipe; the second is the errno). The guard writes
// OCNIX_STAGE_OK once its /proc is mounted.
enum {
	OCNIX_STAGE_OK = 0,
	OCNIX_STAGE_GUARD,
	OCNIX_STAGE_PROC,
	OCNIX_STAGE_SIGMASK,
	OCNIX_STAGE_SETSID,
	OCNIX_STAGE_SETGROUPS,
	OCNIX_STAGE_SETGID,
	OCNIX_STAGE_SETUID,
	OCNIX_STAGE_PDEATHSIG,
	OCNIX_STAGE_CHDIR,
	OCNIX_STAGE_EXEC,
	OCNIX_STAGE_SCOPE,
};

struct ocnix_server_args {
	const char *path;
	char *const *argv;
	char *const *envp;
	const char *dir;
	int drop; // switch to uid, gid, groups
	uid_t uid;
	gid_t gid;
	size_t ngroups;
	const gid_t *groups;
	int errfd;    // write end of the close-on-exec error pipe
	int parentfd; // pidfd of the supervisor
	int scopefd;  // -1, or a Landlock ruleset the server restricts itself with, last
};

long ocnix_start_guard(int errfd, int parentfd);
long ocnix_start_server(const struct ocnix_server_args *a);
