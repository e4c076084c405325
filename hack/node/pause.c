/*
 * The pod sandbox ("pause") process of the local node's pods: it holds the pod's namespaces,
 * reaps orphaned children when it is the pod's init, and exits on SIGINT/SIGTERM. The same job
 * as Kubernetes' build/pause/linux/pause.c, written here because Debian packages no pause
 * image and the node cannot pull one. hack/local-cluster.sh compiles it statically.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { _exit(128 + sig); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) pause();
  return 0;
}
