/*
 * c-cli FILE: counts the lines, words and bytes of FILE and names its most frequent word,
 * like a small `wc`. Built with Debian's clang and wasi-libc for wasm32-wasi (WASI preview 1).
 *
 * FILE defaults to /data/input.txt. The module can open it only if the profile grants the
 * directory (`mounts = ["/data"]`): wasi-libc finds the file through the directories the
 * runtime preopened, and with none it fails with ENOTCAPABLE ("Capabilities insufficient").
 *
 * Exit statuses: 0 counted, 1 FILE could not be read.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 4096
#define MAX_WORD 64

struct word {
    char text[MAX_WORD];
    unsigned count;
};

static struct word words[MAX_WORDS];
static size_t distinct;

/* Counts one (lower-cased) word; words past MAX_WORDS distinct ones are not tallied. */
static void tally(const char *text) {
    for (size_t i = 0; i < distinct; i++) {
        if (strcmp(words[i].text, text) == 0) {
            words[i].count++;
            return;
        }
    }
    if (distinct < MAX_WORDS) {
        strncpy(words[distinct].text, text, MAX_WORD - 1);
        words[distinct].count = 1;
        distinct++;
    }
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/data/input.txt";
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        fprintf(stderr, "c-cli: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    unsigned long lines = 0, nwords = 0, bytes = 0;
    char word[MAX_WORD];
    size_t len = 0;
    int c;
    while ((c = fgetc(file)) != EOF) {
        bytes++;
        if (c == '\n') {
            lines++;
        }
        if (isalnum(c)) {
            if (len < MAX_WORD - 1) {
                word[len++] = (char)tolower(c);
            }
        } else if (len > 0) {
            word[len] = '\0';
            tally(word);
            nwords++;
            len = 0;
        }
    }
    if (len > 0) {
        word[len] = '\0';
        tally(word);
        nwords++;
    }
    if (ferror(file)) {
        fprintf(stderr, "c-cli: cannot read %s: %s\n", path, strerror(errno));
        fclose(file);
        return 1;
    }
    fclose(file);
    size_t best = 0;
    for (size_t i = 1; i < distinct; i++) {
        if (words[i].count > words[best].count) {
            best = i;
        }
    }
    printf("%s: %lu lines, %lu words, %lu bytes\n", path, lines, nwords, bytes);
    if (distinct > 0) {
        printf("most frequent word: \"%s\" (%u times)\n", words[best].text, words[best].count);
    }
    return 0;
}
