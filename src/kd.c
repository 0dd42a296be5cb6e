/* kd: the command-line tool. It uses only the public API. */
#include <stdio.h>
#include <string.h>

#include "kd.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("kd %s (libkd %s, kernels %s)\n", KD_VERSION_STRING, kd_version(), kd_kernels_name());
        return 0;
    }
    printf("usage: kd [--version] [--help]\n");
    return argc > 1 && strcmp(argv[1], "--help") != 0 ? 2 : 0;
}
