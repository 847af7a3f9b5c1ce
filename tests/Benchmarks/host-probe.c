// Host-slowdown probe for consume-bench.sh: is the machine itself running at full speed during a measurement?
//
// On this machine (a 2-vCPU virtual machine) the host sometimes runs both vCPUs at about a tenth of their speed for
// 5-60 ms at a time, even when the guest is idle: a fixed piece of arithmetic that takes 20 us then takes 100-450 us,
// on both CPUs at once. The guest sees no steal time and no missed wake-up (each stall is shorter than a millisecond),
// only everything running slower. Every request in flight then waits for it (decision 0006, twenty-third session).
//
// Run one per CPU, pinned (taskset) and at real-time priority (chrt -f), so that the guest's own load never delays it:
// every ~1 ms it times a fixed unit of arithmetic (~20 us) and prints each unit that took more than 4 times the
// fastest one seen, as "<end time, unix seconds> <duration in us>". It uses ~2 % of a CPU.
//
//   cc -O2 -o host-probe host-probe.c && taskset -c 0 chrt -f 50 ./host-probe <seconds>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static volatile unsigned long sink;

static void unit(long iterations) { // pure arithmetic: no memory traffic, no system call
  unsigned long x = 1;
  for (long i = 0; i < iterations; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  sink = x;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: host-probe <seconds> [iterations per unit, 15000]\n");
    return 2;
  }
  double seconds = atof(argv[1]), fastest = 1, start = now(CLOCK_MONOTONIC);
  long iterations = argc > 2 ? atol(argv[2]) : 15000, units = 0;
  struct timespec pause = {0, 1000000};
  setvbuf(stdout, NULL, _IOFBF, 1 << 20); // written at exit: no I/O while measuring
  while (now(CLOCK_MONOTONIC) - start < seconds) {
    double begin = now(CLOCK_MONOTONIC);
    unit(iterations);
    double took = now(CLOCK_MONOTONIC) - begin;
    units++;
    if (took < fastest) fastest = took;
    if (units > 100 && took > 4 * fastest) printf("%.6f %.0f\n", now(CLOCK_REALTIME), took * 1e6);
    nanosleep(&pause, NULL);
  }
  fprintf(stderr, "host-probe: %ld units, fastest %.1f us\n", units, fastest * 1e6);
  return 0;
}
