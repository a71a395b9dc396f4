module goerrprof.test/oracle

go 1.22
