/* Does a large nonblocking exchange progress while a rank computes? (docs/multihost.md)
 *
 *   mpicc -O2 -o /tmp/mpi-progress-check launch/mpi-progress-check.c -lpthread
 *   launch/local-cluster.sh --hosts 2 --slots 1 --rate 200mbit -- /tmp/mpi-progress-check MODE BYTES SECONDS
 *
 * Two ranks post MPI_Irecv/MPI_Isend of BYTES to each other, compute for SECONDS, then
 * wait; rank 0 prints how long the wait after the compute took. MODE 0: no MPI call during
 * the compute; 1: MPI_Testall every 1 ms of compute; 2: a second thread polls MPI_Testall
 * every 0.2 ms (needs MPI_THREAD_MULTIPLE). */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static MPI_Request requests[2];

static double spin(double seconds) {
    double t0 = MPI_Wtime(), x = 0;
    while (MPI_Wtime() - t0 < seconds) x += 1e-9;
    return x;
}

static void *poll_thread(void *arg) {
    int done = 0;
    while (!done) {
        MPI_Testall(2, requests, &done, MPI_STATUSES_IGNORE);
        if (!done) { struct timespec ts = {0, 200000}; nanosleep(&ts, 0); }
    }
    return arg;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: mpi-progress-check MODE BYTES SECONDS\n"); return 2; }
    int mode = atoi(argv[1]), n = atoi(argv[2]);
    double compute = atof(argv[3]);
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, mode == 2 ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2 || (mode == 2 && provided != MPI_THREAD_MULTIPLE)) {
        if (rank == 0) fprintf(stderr, "needs 2 ranks (and MPI_THREAD_MULTIPLE for mode 2)\n");
        MPI_Finalize();
        return 2;
    }
    char *out = malloc(n), *in = malloc(n);
    memset(out, rank, n);
    volatile double sink = 0;
    for (int it = 0; it < 3; it++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Irecv(in, n, MPI_BYTE, 1 - rank, 1, MPI_COMM_WORLD, &requests[0]);
        MPI_Isend(out, n, MPI_BYTE, 1 - rank, 1, MPI_COMM_WORLD, &requests[1]);
        pthread_t thread;
        if (mode == 2) pthread_create(&thread, 0, poll_thread, 0);
        if (mode == 1) {
            int done = 0;
            while (MPI_Wtime() - t0 < compute) { sink += spin(0.001); if (!done) MPI_Testall(2, requests, &done, MPI_STATUSES_IGNORE); }
        } else {
            sink += spin(compute);
        }
        double t1 = MPI_Wtime();
        if (mode == 2) pthread_join(thread, 0); else MPI_Waitall(2, requests, MPI_STATUSES_IGNORE);
        double t2 = MPI_Wtime();
        if (rank == 0) printf("mode %d, %d bytes: compute %.3f s, wait after it %.3f s\n", mode, n, t1 - t0, t2 - t1);
    }
    free(out); free(in);
    MPI_Finalize();
    return 0;
}
