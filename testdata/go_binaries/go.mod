module goerrprof.test/gobin

go 1.19
