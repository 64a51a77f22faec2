/*
 * lexer.h -- tokens of SOM class files.
 *
 * Invariants: the lexer never reads past src + len (the source need not be NUL-terminated),
 * never allocates, and reports a malformed token as HYI_TOK_ERROR with a message instead of
 * stopping. Lines and columns count from 1; a tab counts as one column.
 */
#ifndef HYDRA_LEXER_H
#define HYDRA_LEXER_H

#include <stddef.h>
#include <stdint.h>

typedef enum hyi_tok_kind {
    HYI_TOK_EOF,
    HYI_TOK_ERROR,      /* text = the offending characters; lexer->error says why */
    HYI_TOK_IDENT,      /* foo, primitive */
    HYI_TOK_KEYWORD,    /* foo: */
    HYI_TOK_KEYWORDS,   /* foo:bar: (only right after #) */
    HYI_TOK_BINARY,     /* + - * / \ % < > = ~ & | , @ and sequences of them */
    HYI_TOK_INTEGER,    /* 123 */
    HYI_TOK_DOUBLE,     /* 1.5 1.5e10 */
    HYI_TOK_STRING,     /* 'abc' (text includes the quotes; escapes undecoded) */
    HYI_TOK_POUND,      /* # */
    HYI_TOK_LPAREN, HYI_TOK_RPAREN, HYI_TOK_LBRACK, HYI_TOK_RBRACK,
    HYI_TOK_COLON,      /* : */
    HYI_TOK_CARET,      /* ^ */
    HYI_TOK_PERIOD,     /* . */
    HYI_TOK_ASSIGN,     /* := */
    HYI_TOK_SEPARATOR,  /* ---- (four or more dashes) */
} hyi_tok_kind;

typedef struct hyi_token {
    hyi_tok_kind kind;
    const char *text;
    uint32_t len;
    int line, column;
} hyi_token;

typedef struct hyi_lexer {
    const char *src, *end, *p;
    int line;
    const char *line_start;
    const char *error;   /* message for the last HYI_TOK_ERROR */
} hyi_lexer;

void hyi_lexer_init(hyi_lexer *lx, const char *src, size_t len);
/* The next token. after_pound: the previous token was # (selectors like foo:bar: are one
 * token there). */
hyi_token hyi_lexer_next(hyi_lexer *lx, int after_pound);
/* A readable name of a token kind, for diagnostics ("identifier", "')'"...). */
const char *hyi_tok_name(hyi_tok_kind kind);

#endif
