#pragma once
#include <cblas.h>

// LAPACK's general eigenvalue driver, which Debian's OpenBLAS exports (its package ships no
// lapacke.h): the Fortran interface, every argument by reference.
void dgeev_(const char *jobvl, const char *jobvr, const int *n, double *a, const int *lda, double *wr, double *wi,
            double *vl, const int *ldvl, double *vr, const int *ldvr, double *work, const int *lwork, int *info);
