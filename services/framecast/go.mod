module github.com/framecast/framecast/services/framecast

go 1.26.8
