module github.com/framecast/framecast/services/producer

go 1.26.8
